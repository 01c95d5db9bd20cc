"""The web UI: server-rendered pages (Jinja2) with SVG charts and pipeline graphs; see docs/ui.md."""
