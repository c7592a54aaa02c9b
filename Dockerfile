# checkout-gateway: slim, non-root; `migrate` then `serve`. Built by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY config ./config
COPY providers ./providers
COPY gateway ./gateway
COPY sandbox ./sandbox
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gateway \
    && mkdir -p /data \
    && chown gateway /data

USER gateway
ENV GATEWAY_DATA_DIR=/data \
    GATEWAY_CONFIG_FILE=/app/config/gateway.toml \
    GATEWAY_PRODUCTS_FILE=/app/config/products.toml
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]

# SERVE_WORKERS is not a GATEWAY_ setting (see .env.example). X-Forwarded-For is believed
# only from GATEWAY_TRUSTED_PROXIES (default loopback; docker-compose.yml sets its own
# network, where the host's reverse proxy arrives); FORWARDED_ALLOW_IPS, if set, is the
# older name for it.
CMD ["sh", "-c", "checkout-gateway migrate && exec checkout-gateway serve --host 0.0.0.0 --port 8000 --workers \"${SERVE_WORKERS:-2}\" ${FORWARDED_ALLOW_IPS:+--forwarded-allow-ips \"$FORWARDED_ALLOW_IPS\"}"]
