"""Talking to Home Assistant: its WebSocket protocol (sans I/O), the connection, the login gate,
the registries and frame tracing."""
