"""The metrics process: scrape agents into DuckDB (or the shared DuckLake), compute rates, answer
time-range queries on an internal HTTP endpoint on the Unix socket `DATA_DIR/metrics.sock`.

A part of its own: among our packages it depends only on `schemas` (third-party: pydantic, duckdb,
numpy, psycopg in scale-out), never on `webui` (tests/test_layers.py). The server starts it
(`metrics.service.run`, from webui/serve.py), and the web workers reach it through
`webui.metrics.client`. See docs/metrics.md and docs/architecture.md.
"""
