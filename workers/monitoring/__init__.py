"""Beat's jobs: rates and health computed into Redis, and the health report's I/O half."""
