"""The ways messages reach the pipeline: the bulk takers (Redis, RabbitMQ), the Celery task,
and the Flower batch events; sending messages back to the queue."""
