"""The web side of the metrics process (the top-level `metrics` package): the Flask blueprint
(`api.bp`) that proxies metric queries to it, and `client.MetricsClient`, which the server's agent
views and the rollout controller use to reach it over the Unix socket `DATA_DIR/metrics.sock`.
See docs/metrics.md.
"""
