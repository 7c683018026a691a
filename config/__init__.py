"""Configuration only: settings, the rules file, the Celery app, logging, Redis key names.

Also the `ha-ingestor` command (main_command.py), the composition root naming listener and workers.
"""
