FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md LICENSE ./
COPY config ./config
COPY providers ./providers
COPY gateway ./gateway
RUN pip install --no-cache-dir . && useradd --system --home /app gateway \
    && mkdir -p /data && chown gateway /data
USER gateway
ENV GATEWAY_DATA_DIR=/data
EXPOSE 8000
CMD ["checkout-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
