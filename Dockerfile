# ha-ingestor: one image for every process (listener, worker, beat, flower).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY listener ./listener
COPY workers ./workers
COPY config ./config
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 ingestor \
    && mkdir -p /data \
    && chown ingestor /data

USER ingestor
VOLUME ["/data"]
EXPOSE 8001 5555
CMD ["ha-ingestor", "listener"]
