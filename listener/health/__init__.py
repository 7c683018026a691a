"""What the listener says about itself: its figures, the state it writes to Redis, and its HTTP
face (/health, /metrics, the status page)."""
