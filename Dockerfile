# ccc-bridge container image: `docker build -t ccc-bridge:0.1.0 .` (docs/deploy.md).
# Two stages: the builder installs the project into a virtualenv; the runtime image gets that
# virtualenv and nothing else from it. Every dependency ships a manylinux wheel, so neither
# stage needs a compiler.

FROM python:3.11.14-slim-trixie AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A virtualenv without pip: the base image's pip installs into it, so the runtime copy holds
# the service and its dependencies only.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip install --no-cache-dir --python /opt/venv/bin/python .


FROM python:3.11.14-slim-trixie

LABEL org.opencontainers.image.title="ccc-bridge" \
      org.opencontainers.image.description="Alibaba Cloud Call Center (CCC 2017-07-05) to Kafka bridge" \
      org.opencontainers.image.licenses="Apache-2.0"

# Bytecode was compiled by pip in the builder; the root filesystem is read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed numeric user, so Kubernetes can check runAsNonRoot (the Helm chart's runAsUser is
# the same number). Nothing installs at run time: pip, setuptools and wheel go.
RUN groupadd --system --gid 10001 ccc-bridge \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin ccc-bridge \
    && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
EXPOSE 8080

# For docker and compose; Kubernetes ignores it and uses the chart's probes. Stdlib only, as
# the slim image has no curl; the port follows CCC_BRIDGE_HTTP__PORT like the service does.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('CCC_BRIDGE_HTTP__PORT', '8080'), timeout=4)"]

ENTRYPOINT ["ccc-bridge", "run"]
