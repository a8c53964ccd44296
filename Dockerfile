# The reportgen image: `docker build -t reportgen .`, then `docker run IMAGE serve | worker | migrate | check | token`.
# README, "Run in production", "Container image", says how to run it and what it needs.
#
# BASE: the official image by tag; pin it by digest in production (python:3.11-slim-bookworm@sha256:...). Build and
# runtime stages must use the same base, since the venv points at its interpreter. Any Debian-like image with
# python3 (3.11+) and its venv module will do (the tests use one built from Debian packages when none can be pulled).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# EXTRAS: optional features to install. parquet (pyarrow, about 170 MB) is in by default, so that the image serves
# every format the API documents, as the systemd install does; `--build-arg EXTRAS=` leaves it out (a generate
# request for parquet then answers 422).
ARG EXTRAS=parquet
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/reportgen/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# uv itself, pinned by hash, in a venv of its own that stays in this stage.
COPY tools/uv-requirements.txt tools/
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet --require-hashes -r tools/uv-requirements.txt
# The dependencies alone first (a layer that changes only with the lock), then the project itself, installed into
# the venv as a package (--no-editable): the runtime stage needs nothing but the venv.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --locked --no-dev --no-editable --no-install-project --python python3 \
        $(for extra in $EXTRAS; do printf -- '--extra %s ' "$extra"; done)
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --locked --no-dev --no-editable --python python3 \
        $(for extra in $EXTRAS; do printf -- '--extra %s ' "$extra"; done) \
    && /opt/reportgen/venv/bin/reportgen --help >/dev/null

FROM ${BASE} AS runtime
# A fixed uid and gid, so that a volume for the artifacts can be given to it on the host (chown 10001:10001).
ARG UID=10001
RUN groupadd --gid "$UID" reportgen \
    && useradd --uid "$UID" --gid reportgen --home-dir /var/lib/reportgen --no-create-home \
        --shell /usr/sbin/nologin reportgen \
    && install -d -o reportgen -g reportgen -m 0750 /var/lib/reportgen /var/lib/reportgen/artifacts
COPY --from=build /opt/reportgen/venv /opt/reportgen/venv
COPY deploy/container/entrypoint.sh deploy/container/healthcheck.py /opt/reportgen/bin/
ENV PATH=/opt/reportgen/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REPORTGEN_ARTIFACT_DIR=/var/lib/reportgen/artifacts \
    REPORTGEN_LOG_FORMAT=json
WORKDIR /var/lib/reportgen
USER ${UID}:${UID}
# The API (serve), a worker's /metrics (REPORTGEN_WORKER_METRICS_PORT).
EXPOSE 8000 9464
# The API drains in-flight requests on SIGTERM; a worker lets running jobs finish for
# REPORTGEN_SHUTDOWN_GRACE_SECONDS (30) and hands the rest back: stop it with a longer timeout (docker stop -t 60).
STOPSIGNAL SIGTERM
# The API: GET /health/ready; a worker: its metrics endpoint answers. Python's urllib, no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/reportgen/bin/healthcheck.py"]
ENTRYPOINT ["/opt/reportgen/bin/entrypoint.sh"]
CMD ["serve"]
