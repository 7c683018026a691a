"""`ha-ingestor import`: what HA already recorded (states and long-term statistics), read
window by window with a resumable cursor and sent down the pipeline."""
