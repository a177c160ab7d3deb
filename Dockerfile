# syntax=docker/dockerfile:1
# One image for every leadflow service; the command picks the service:
#   docker run leadflow leadflow serve scoring
# Build: docker build -t leadflow .   (docker-compose.yml and deploy/k8s use it)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/leadflow

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY leadflow ./leadflow
COPY shared ./shared
COPY services ./services
RUN /opt/leadflow/bin/pip install --no-cache-dir -c constraints.txt .


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="leadflow" \
      org.opencontainers.image.description="Event-driven lead ingestion: capture, scoring, nurture, routing and insights on Kafka." \
      org.opencontainers.image.licenses="Apache-2.0"

# Non-secret defaults only: LEADFLOW_SECRET_KEY and LEADFLOW_DATABASE_URL come from
# the runtime environment (compose, a Kubernetes Secret).
ENV PATH=/opt/leadflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEADFLOW_HOST=0.0.0.0 \
    LEADFLOW_CONFIG=/etc/leadflow/leadflow.yaml \
    LEADFLOW_VAR_DIR=/var/lib/leadflow \
    LEADFLOW_HEALTHCHECK_URL=http://127.0.0.1:8001/healthz

RUN groupadd --system --gid 10001 leadflow \
    && useradd --system --uid 10001 --gid leadflow --no-create-home \
       --home-dir /var/lib/leadflow --shell /usr/sbin/nologin leadflow \
    && mkdir -p /var/lib/leadflow /etc/leadflow \
    && chown leadflow:leadflow /var/lib/leadflow

COPY --from=build /opt/leadflow /opt/leadflow
COPY leadflow.example.yaml /etc/leadflow/leadflow.yaml

USER 10001:10001
WORKDIR /var/lib/leadflow

EXPOSE 8001-8005

# The image serves any of the five services; set LEADFLOW_HEALTHCHECK_URL to the
# port of the one it runs (compose and Kubernetes define their own probes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['LEADFLOW_HEALTHCHECK_URL'], timeout=4)"]

CMD ["leadflow", "serve", "capture"]
