# syntax=docker/dockerfile:1
# The tickhouse code location image: the project installed from uv.lock (runtime dependencies
# only), run as a non-root user, serving the code location over gRPC on 0.0.0.0:4000.
# infra/compose/docker-compose.yaml builds it (service tickhouse-code) and reuses it for the
# Dagster webserver and daemon (same Dagster version on both sides of the gRPC API) and for the
# one-shot init jobs.
#
#   docker build -t tickhouse-dagster:local .
#   docker run --rm -p 127.0.0.1:4000:4000 tickhouse-dagster:local

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: uv sync into /opt/tickhouse/.venv -----------------------------------------
FROM ${PYTHON_IMAGE} AS build
# The same uv release the Makefile pins (UV_VERSION there).
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/tickhouse/.venv
WORKDIR /opt/tickhouse
# Dependencies first, exactly as uv.lock pins them (this layer is reused while only the
# code changes); --frozen: install the lock as is, never re-resolve.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project itself (hatchling needs the README named in pyproject.toml).
COPY README.md ./
COPY tickhouse_dagster ./tickhouse_dagster
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# --- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" tickhouse \
    && useradd --system --uid "${APP_UID}" --gid tickhouse --no-create-home \
        --home-dir /opt/dagster/home --shell /usr/sbin/nologin tickhouse \
    && mkdir -p /opt/dagster/home/storage /var/lib/tickhouse \
    && chown -R tickhouse:tickhouse /opt/dagster/home /var/lib/tickhouse
# The Spark engine (`spark_backfill_ticks`): a Java runtime for pyspark's JVM (spark-submit in
# client mode runs the driver here; the job is tickhouse_dagster/spark/job.py, inside the
# installed package) and the Iceberg / AWS / PostgreSQL jars, resolved once at build time from
# Maven Central into /opt/tickhouse/cache/ivy, so a run never downloads them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
# Code and virtualenv stay owned by root: the service user can read, not change them.
COPY --from=build /opt/tickhouse /opt/tickhouse
ENV PATH=/opt/tickhouse/.venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/tickhouse/.venv \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TICKHOUSE_HOME=/var/lib/tickhouse \
    TICKHOUSE_CACHE=/opt/tickhouse/cache \
    PYSPARK_PYTHON=/opt/tickhouse/.venv/bin/python
RUN python -m tickhouse_dagster.spark.session resolve-jars
WORKDIR /opt/tickhouse
USER ${APP_UID}:${APP_UID}
EXPOSE 4000
# No HEALTHCHECK here: the same image also runs the webserver and the daemon; each compose
# service declares its own (this one: `dagster api grpc-health-check -p 4000`).
# The default command serves the code location; the compose file overrides it for the
# webserver, the daemon and the init jobs.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "tickhouse_dagster.definitions", "--location-name", "tickhouse"]
