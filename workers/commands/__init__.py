"""The workers' side of the `ha-ingestor` commands: `status`, `dlq`, `flower`, and `check`'s
checks of the broker, Redis and InfluxDB."""
