"""memsched: agent-memory maintenance run as systemd timers and one-shot services."""

__version__ = "0.1.0"
