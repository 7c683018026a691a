"""Beat's jobs and the health report's I/O half; the `status` and `flower` commands."""
