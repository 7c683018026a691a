# ha-ingestor: one image for every process (listener, worker, beat, flower); the command picks
# the process (docker-compose.yml); devtools/ (simulator, local servers) stays out of it.
# Linted by hadolint in tests/unit/deploy/test_deployment_files.py.
#
# Dependencies are installed with the pins of constraints.txt (the versions the tests ran with)
# into a virtualenv in a build stage; the runtime stage copies that virtualenv, runs as an
# unprivileged user and keeps its state (the listener's spool, beat's schedule) under /data.
#
# BASE_IMAGE: any Debian-like image with python3 (3.11-3.13) and its venv module, e.g. an arm64
# one, or a local base where Docker Hub is out of reach (docs/deployment.md).
# PIP_CA_BUNDLE: behind a proxy that intercepts TLS, the CA bundle that trusts it, as a file in
# the build context (public certificates; it stays in the build stage, out of the image):
#   cp /etc/ssl/certs/ca-certificates.crt pip-ca.pem    # pip-ca.pem is git-ignored
#   docker build --build-arg PIP_CA_BUNDLE=pip-ca.pem -t ha-ingestor:latest .
# (A plain file rather than a BuildKit secret: docker-compose 1.x and Docker before 23 build
# without BuildKit, and `RUN --mount` fails there.)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_CA_BUNDLE=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
# Without PIP_CA_BUNDLE this copies LICENSE again, to a path nothing reads.
COPY ${PIP_CA_BUNDLE:-LICENSE} /tmp/pip-ca.pem
COPY core ./core
COPY config ./config
COPY listener ./listener
COPY workers ./workers
RUN if [ -n "$PIP_CA_BUNDLE" ]; then export PIP_CERT=/tmp/pip-ca.pem; fi \
    && python3 -m venv /opt/ha-ingestor \
    && /opt/ha-ingestor/bin/pip install --no-cache-dir -c constraints.txt .

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/ha-ingestor/bin:$PATH \
    DATA_DIR=/data
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin ingestor \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/ha-ingestor /opt/ha-ingestor
USER 10001:10001
WORKDIR /data
# No VOLUME: docker-compose.yml mounts a named volume where a process keeps state (listener,
# beat, Flower); an image VOLUME would leave one anonymous volume behind per worker container
# at every `down` and `up` (seen in tests/docker).
# 8001: the listener's /health, /metrics and status page; 5555: Flower.
EXPOSE 8001 5555
STOPSIGNAL SIGTERM
CMD ["ha-ingestor", "listener"]
