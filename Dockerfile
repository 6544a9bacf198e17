# The smsguard image: detector workers (`smsguard worker`), the dashboard, the CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code in one layer: the package is small next to its dependencies.
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY training ./training
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app smsguard \
    && mkdir -p /app/models /var/lib/smsguard \
    && chown smsguard /var/lib/smsguard

# The model registry (models/ of the checkout) is mounted at /app/models by docker-compose.yml,
# so promoting or rolling back a model needs no new image.
ENV SMSGUARD_MODELS_DIR=/app/models \
    SMSGUARD_AUDIT_LOG=/var/lib/smsguard/audit.jsonl \
    SMSGUARD_LOG_FORMAT=json

USER smsguard
EXPOSE 6066 8080
CMD ["smsguard", "worker"]
