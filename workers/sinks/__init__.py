"""Where points are written: the InfluxDB sinks and the errors they raise, the one vocabulary
the pipeline decides retries with."""
