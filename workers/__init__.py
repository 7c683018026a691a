"""The Celery side: the ingest task writes batches to InfluxDB, with retries and dead letters.

Also beat's health and rate jobs, the broker transport, and the `status`, `dlq`, `flower` commands.
"""
