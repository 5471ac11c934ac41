# syntax=docker/dockerfile:1
# Allowance production image: gunicorn serves config.wsgi on :8000; the same image runs the
# Celery worker and beat (see docker-compose.yml). Build: docker build -t allowance .
FROM python:3.13-slim

ARG UV_VERSION=0.13.9

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.13 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=config.settings \
    STATIC_ROOT=/app/staticfiles \
    VAR_DIR=/var/lib/allowance

# uv from PyPI, pinned.
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# An unprivileged user; the code stays root-owned (read-only to the app).
RUN groupadd --system --gid 10001 allowance \
    && useradd --system --uid 10001 --gid allowance --home-dir /var/lib/allowance \
        --no-create-home --shell /usr/sbin/nologin allowance \
    && mkdir -p /var/lib/allowance \
    && chown allowance:allowance /var/lib/allowance

WORKDIR /app

# Dependencies first (cached while uv.lock is unchanged): exactly the lock, no dev tools.
COPY pyproject.toml uv.lock .python-version ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

COPY . .

# Static files are collected (hashed and compressed by WhiteNoise) at build time. The settings
# refuse to load without a SECRET_KEY and the Stripe keys when DEBUG is off, so throwaway values
# are given here only (collectstatic calls nothing); the real ones come from .env at run time.
RUN mkdir -p static \
    && DEBUG=false SECRET_KEY=collectstatic-build-only-not-a-secret-0123456789abcdefghijklmnop \
       STRIPE_SECRET_KEY=sk_build_only_not_a_key STRIPE_WEBHOOK_SECRET=whsec_build_only_not_a_secret \
       VAR_DIR=/tmp/build-var python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-var

USER allowance:allowance
EXPOSE 8000

# WEB_CONCURRENCY (read by gunicorn) sets the number of workers.
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-", "--error-logfile", "-", "--timeout", "60", "--graceful-timeout", "30"]
