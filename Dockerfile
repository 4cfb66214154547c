# syntax=docker/dockerfile:1
# The httpsync operator image: `docker build -t httpsync:dev .` (hack/e2e-kind.sh builds and loads it into kind).
# Two stages on the same base: the builder makes a wheel and installs it into a virtualenv; the final stage
# gets that virtualenv and nothing else (no pip cache, no build tools, no sources).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/httpsync
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Dependency versions are bounded in pyproject.toml; `httpsync --help` proves the entry point imports.
RUN /opt/httpsync/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/httpsync/bin/pip install /wheels/httpsync-*.whl \
    && /opt/httpsync/bin/httpsync --help >/dev/null

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="httpsync" \
      org.opencontainers.image.description="Kubernetes operator that turns any HTTP/REST API into software-catalog entities" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"
# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at build time), logs
# unbuffered, HOME on the writable /tmp, and the operator's data in /var/lib/httpsync: the embedded catalog and
# the change-detection state of the Port and webhook sinks (the chart mounts an emptyDir or a
# PersistentVolumeClaim there; docs/helm.md says what losing it costs).
ENV PATH=/opt/httpsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HTTPSYNC_CATALOG=/var/lib/httpsync/catalog.db \
    HTTPSYNC_STATE=/var/lib/httpsync/state.db
RUN groupadd --system --gid 10001 httpsync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin httpsync \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/httpsync
COPY --from=builder /opt/httpsync /opt/httpsync
# Declared after it is created and owned by the user, so a volume Docker creates for it starts with that owner.
VOLUME ["/var/lib/httpsync"]
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["httpsync", "run"]
