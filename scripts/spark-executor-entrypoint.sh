#!/bin/bash
# The command of a Spark executor pod in the components' Spark image (crispops-spark-executor).
#
# Spark on Kubernetes creates each executor pod with the argument `executor` and its
# settings in SPARK_* environment variables, and expects the image to turn them into a
# KubernetesExecutorBackend JVM, as Spark's own image (kubernetes/dockerfiles/spark/
# entrypoint.sh) does. pyspark from PyPI ships the jars but not that script: this is its
# executor branch, for pyspark's layout (SPARK_HOME is the installed pyspark package).
# Anything else is run as given, so the image's other commands still work.
set -euo pipefail

if [ "${1:-}" != "executor" ]; then
    exec "$@"
fi
shift

python="${PYSPARK_PYTHON:-/opt/crispops/bin/python}"
SPARK_HOME="${SPARK_HOME:-$("$python" -c 'from pyspark.find_spark_home import _find_spark_home; print(_find_spark_home())')}"
export SPARK_HOME

# SPARK_JAVA_OPT_0, _1, ...: the executor's JVM options, in order.
java_opts=()
while IFS= read -r opt; do
    [ -n "$opt" ] && java_opts+=("$opt")
done < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/[^=]*=\(.*\)/\1/g')

classpath="${SPARK_HOME}/jars/*"
if [ -n "${SPARK_CLASSPATH:-}" ]; then
    classpath="${SPARK_CLASSPATH}:${classpath}"
fi

hostname="${SPARK_EXECUTOR_POD_IP:?SPARK_EXECUTOR_POD_IP is set by Spark on each executor pod}"
case "$hostname" in
    *:*) hostname="[$hostname]" ;;  # IPv6
esac

exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" \
    "${java_opts[@]}" \
    -Xms"${SPARK_EXECUTOR_MEMORY:?}" \
    -Xmx"${SPARK_EXECUTOR_MEMORY}" \
    -cp "$classpath" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "${SPARK_DRIVER_URL:?}" \
    --executor-id "${SPARK_EXECUTOR_ID:?}" \
    --cores "${SPARK_EXECUTOR_CORES:?}" \
    --app-id "${SPARK_APPLICATION_ID:?}" \
    --hostname "$hostname" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:?}"
