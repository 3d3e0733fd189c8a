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
# Two stages. `components` (the default target) has neither Java nor pyspark (only the
# 2 KB executor entrypoint). `spark` (--target spark, tagged <tag>-spark) is for projects
# with feature_store.engine = "spark": the components stage plus Java 17 from Debian and
# the [spark] extra's wheels, from build/wheelhouse-spark (only the wheels the default
# wheelhouse lacks). Building it on top of the first stage reuses that stage's layers
# instead of installing every package twice.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS components

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/crispops \
    PATH=/opt/crispops/bin:$PATH \
    BENTOML_DO_NOT_TRACK=True \
    OMP_NUM_THREADS=1

COPY build/wheelhouse/ /tmp/wheelhouse/
# uv installs the wheelhouse (a minute faster than pip); both resolve from it alone.
RUN python3 -m venv /opt/crispops \
 && /opt/crispops/bin/pip install --no-index --find-links /tmp/wheelhouse uv \
 && /opt/crispops/bin/uv pip install --no-cache --python /opt/crispops/bin/python \
      --no-index --find-links /tmp/wheelhouse crispops \
 && rm -rf /tmp/wheelhouse \
 && /opt/crispops/bin/python -c "import kfp, feast, bentoml, sklearn, crispops"

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

FROM components AS spark
USER root
RUN apt-get update \
 && apt-get install --yes --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && java -version
# crispops is installed already: pip keeps it and adds what its [spark] extra needs.
COPY build/wheelhouse-spark/ /tmp/wheelhouse-spark/
RUN /opt/crispops/bin/uv pip install --no-cache --python /opt/crispops/bin/python \
      --no-index --find-links /tmp/wheelhouse-spark "crispops[spark]" \
 && rm -rf /tmp/wheelhouse-spark \
 && /opt/crispops/bin/python -c "import feast, pyspark, crispops"
USER 10001:10001

# The default target (`docker build .`): the components stage, without Spark.
FROM components
