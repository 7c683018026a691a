"""The ways messages reach the pipeline: one taker interface (Redis and RabbitMQ bulk takers),
the consumer bootstep that owns the taker, the stock Celery task; sending messages back to the
queue."""
