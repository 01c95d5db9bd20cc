"""compiler: see docs/architecture.md."""
