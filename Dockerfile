# syntax=docker/dockerfile:1
# One image for both processes: `k8s-ee serve` (the default command) or `k8s-ee worker`.
# Multi-arch, from the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/k8s-ee/k8s-ee-gateway:0.1.0 --push .
# Every dependency installs from a wheel (--only-binary): no compiler in either stage, on
# either architecture. The final stage holds the base Python and the virtualenv, nothing else.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Exactly what pyproject.toml packages, and what building it reads (tests/install/test_image.py).
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY handlers/ handlers/
COPY providers/ providers/
RUN python -m venv /opt/k8s-ee \
 && /opt/k8s-ee/bin/python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/k8s-ee/bin/python -m pip install --only-binary=:all: /wheels/*.whl \
 && /opt/k8s-ee/bin/python -m pip uninstall --yes setuptools pip \
 # Compiled now: the root filesystem is read-only at run time.
 && /opt/k8s-ee/bin/python -m compileall -q -j 0 /opt/k8s-ee/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="k8s-ee gateway" \
      org.opencontainers.image.description="Preview environments for every pull request, driven by webhooks" \
      org.opencontainers.image.source="https://github.com/k8s-ee/k8s-ee-gateway"
# No package manager of Python's in the final image either, and an unprivileged user.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 k8s-ee \
 && useradd --system --uid 10001 --gid k8s-ee --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin k8s-ee
COPY --from=build /opt/k8s-ee /opt/k8s-ee
ENV PATH=/opt/k8s-ee/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    K8S_EE_HOST=0.0.0.0 \
    K8S_EE_WORKER_METRICS_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
# 8080 the gateway (webhooks, /healthz, /readyz, /metrics); 9090 a worker's /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["k8s-ee"]
CMD ["serve"]
