"""Filling the gap after a reconnect from HA's history: pure windows and the paged, resumable
filler."""
