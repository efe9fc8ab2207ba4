"""The jobs and the one-shot runner that the service units call."""
