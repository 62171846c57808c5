# syntax=docker/dockerfile:1
# The userapi image: `docker build -t userapi .` (compose.yaml builds it too).
#
# Two stages. The builder installs the locked dependencies and the project with uv into /app/.venv;
# the runtime stage is a plain slim Python with that venv and nothing else: no uv, no compiler, no
# source tree, no tests. The Alembic migrations ship inside the package (userapi/migrations), so the
# same image serves (`userapi serve`, the default) and migrates (`userapi migrate`).
#
# Run-time settings come from the environment (see .env.example). The image sets ENVIRONMENT=production,
# so JWT_SECRET and KEY_ENCRYPTION_SECRET (>= 32 bytes each) and DATABASE_URL must be given; WEB_CONCURRENCY sets the worker count.

ARG PYTHON_TAG=3.11-slim

FROM python:${PYTHON_TAG} AS builder
# Pinned: the lock file format and `uv sync` flags are uv's, so the builder must not drift.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
# Bytecode compiled now (the service user cannot write into the venv later); files copied, not
# hard-linked, from the cache mount (which is not part of the image); the interpreter is the base
# image's own, never a downloaded one, so the venv's symlinks resolve in the runtime stage too.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
# Then the project itself, as a regular (non-editable) install: the venv does not need /src.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM python:${PYTHON_TAG} AS runtime
# A fixed, unprivileged uid/gid, so volume ownership and `runAsNonRoot`/`runAsUser` can name it.
RUN groupadd --system --gid 10001 userapi \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin userapi
WORKDIR /app
# Owned by root, not writable by the service user: the process cannot rewrite its own code.
COPY --from=builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1
USER 10001:10001
EXPOSE 8000
# Slim images have no curl: the check is Python's urllib (any error or non-2xx status exits 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]
# `exec` makes userapi PID 1, so `docker stop`'s SIGTERM reaches uvicorn (graceful shutdown);
# the shell is only there to read WEB_CONCURRENCY. Any other command replaces it:
# `docker run IMAGE userapi migrate`, `docker run IMAGE userapi create-admin --email ...`.
CMD ["sh", "-c", "exec userapi serve --workers \"${WEB_CONCURRENCY:-1}\""]
