"""What workers keep in Redis beside the queue: dead letters, counters, the registry cache and
import runs."""
