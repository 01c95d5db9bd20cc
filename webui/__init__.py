"""webui: see docs/architecture.md."""
