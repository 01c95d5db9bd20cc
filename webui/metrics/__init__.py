"""Agent metrics: scrape agents into DuckDB, compute rates, answer time-range queries.

One metrics process (`service.run`) owns `DATA_DIR/metrics.duckdb`; the Flask blueprint
(`api.bp`) and the server's agent views reach it through `client.MetricsClient` over the Unix
socket `DATA_DIR/metrics.sock`. See docs/metrics.md.
"""
