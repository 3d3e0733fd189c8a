# The pipeline components' image: every KFP component runs in it (its tag is pinned in
# src/crispops/images.py and cluster.component_image). Built without network access:
# the project and its dependencies come from a wheelhouse made beforehand with
#   pip wheel -c constraints.txt --wheel-dir build/wheelhouse . uv
# by an interpreter of the base image's Python version: environment markers can differ
# between patch releases (Debian's 3.11.2 needs async-timeout for redis, 3.11.3+ does
# not). `crispops images build` makes it so and builds; `crispops images` prints the
# commands for a registry. uv is there because `bentoml build` (the package step)
# insists on finding it, and would otherwise try to download it.
#
# --build-arg SPARK=1 makes the Spark variant (<tag>-spark) for projects with
# feature_store.engine = "spark": Java 17 from Debian, the [spark] extra (pyspark; the
# wheelhouse must be made with '.[spark]'), and the entrypoint Spark on Kubernetes starts
# executor pods with. The default image has neither Java nor pyspark (only the 2 KB
# entrypoint script); the Spark variant built with podman here is 2.9 GB.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG SPARK=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/crispops \
    PATH=/opt/crispops/bin:$PATH \
    BENTOML_DO_NOT_TRACK=True \
    OMP_NUM_THREADS=1

RUN if [ -n "$SPARK" ]; then \
      apt-get update \
   && apt-get install --yes --no-install-recommends openjdk-17-jre-headless \
   && rm -rf /var/lib/apt/lists/* \
   && java -version; \
    fi

COPY build/wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/crispops \
 && /opt/crispops/bin/pip install --no-index --find-links /tmp/wheelhouse "crispops${SPARK:+[spark]}" uv \
 && rm -rf /tmp/wheelhouse \
 && /opt/crispops/bin/python -c "import kfp, feast, bentoml, sklearn, crispops${SPARK:+, pyspark}"

# Spark on Kubernetes starts an executor pod with the argument `executor`; the executor
# pod template (manifests/components/spark) runs this script as its command.
COPY scripts/spark-executor-entrypoint.sh /usr/local/bin/crispops-spark-executor

# The project: settings and feature definitions (data and state are mounted, not baked).
COPY crispops.toml /app/crispops.toml
COPY feature_repo/*.py feature_repo/*.yaml feature_repo/.feastignore /app/feature_repo/

RUN groupadd --gid 10001 crispops \
 && useradd --uid 10001 --gid 10001 --home-dir /home/crispops --create-home crispops \
 && chown -R 10001:10001 /app
USER 10001:10001
WORKDIR /app
ENV HOME=/home/crispops
CMD ["crispops", "--help"]
