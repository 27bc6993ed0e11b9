# The gateway image: gateway-api (the default command), gateway-worker and
# gateway-migrate, installed from uv.lock.
# Build from the repository root with `make images`, or
# `docker build -f deploy/docker/gateway.Dockerfile -t odr/gateway:dev .`
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
# Compiled bytecode at build time: the runtime filesystem is read-only.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Third-party dependencies first (a cached layer until uv.lock changes). --frozen: exactly the
# lock, never a re-resolution; only this service's members are needed to read the workspace.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/marketplace-gateway/pyproject.toml services/marketplace-gateway/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package odr-gateway
# Then the code. Workspace members are installed editable, so the service keeps its
# alembic.ini and migrations/ beside src/ (SERVICE_ROOT) exactly as in the repository.
COPY shared/src shared/src
COPY services/marketplace-gateway/alembic.ini services/marketplace-gateway/
COPY services/marketplace-gateway/migrations services/marketplace-gateway/migrations
COPY services/marketplace-gateway/src services/marketplace-gateway/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package odr-gateway \
 && /app/.venv/bin/python -m compileall -q \
      shared/src services/marketplace-gateway/src services/marketplace-gateway/migrations

FROM ${PYTHON_IMAGE} AS runtime
# A fixed non-root UID/GID (10001), matching the pods' securityContext (runAsUser: 10001).
RUN groupadd --system --gid 10001 odr \
 && useradd --system --uid 10001 --gid odr --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin odr
# Owned by root and not writable by the service: only /tmp (and the evidence volume) are.
COPY --from=builder /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
USER 10001:10001
EXPOSE 8080
CMD ["gateway-api"]
