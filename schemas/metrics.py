"""The metrics contract between the agent's /metrics endpoint and the server's scraper.

The agent exposes these names; the scraper parses only these; the query API serves the
friendly names of QUERY_METRICS.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "ctrltower_"

# gauge 1, labels: agent_version, collector_version, instance_id, group, revision
AGENT_INFO = "ctrltower_agent_info"
COLLECTOR_UP = "ctrltower_collector_up"  # gauge 0|1
COLLECTOR_RESTARTS = "ctrltower_collector_restarts_total"  # counter
CONFIG_APPLIES = "ctrltower_config_applies_total"  # counter, label result=applied|failed|untrusted
LAST_POLL = "ctrltower_last_successful_poll_timestamp_seconds"  # gauge, unix seconds
COLLECTOR_CPU = "ctrltower_collector_cpu_seconds_total"  # counter, monotonic across collector restarts
COLLECTOR_MEMORY = "ctrltower_collector_resident_memory_bytes"  # gauge
# counter, labels signal=logs|metrics|traces, outcome=accepted|refused|sent|send_failed;
# the agent keeps it monotonic across collector reloads and restarts (the collector's own reset).
COLLECTOR_ITEMS = "ctrltower_collector_items_total"

ItemOutcome = Literal["accepted", "refused", "sent", "send_failed"]

QueryMetric = Literal[
    "cpu",
    "memory",
    "logs_in",
    "logs_out",
    "metrics_in",
    "metrics_out",
    "traces_in",
    "traces_out",
    "send_failed",
    "refused",
]

# query name -> (exposed name, label filter, kind). "rate" kinds are per-second rates of counters,
# computed with resets handled; "gauge" kinds are last values.
QUERY_METRICS: dict[str, tuple[str, dict[str, str], Literal["rate", "gauge"]]] = {
    "cpu": (COLLECTOR_CPU, {}, "rate"),  # cores in use
    "memory": (COLLECTOR_MEMORY, {}, "gauge"),  # bytes
    "logs_in": (COLLECTOR_ITEMS, {"signal": "logs", "outcome": "accepted"}, "rate"),
    "logs_out": (COLLECTOR_ITEMS, {"signal": "logs", "outcome": "sent"}, "rate"),
    "metrics_in": (COLLECTOR_ITEMS, {"signal": "metrics", "outcome": "accepted"}, "rate"),
    "metrics_out": (COLLECTOR_ITEMS, {"signal": "metrics", "outcome": "sent"}, "rate"),
    "traces_in": (COLLECTOR_ITEMS, {"signal": "traces", "outcome": "accepted"}, "rate"),
    "traces_out": (COLLECTOR_ITEMS, {"signal": "traces", "outcome": "sent"}, "rate"),
    "send_failed": (COLLECTOR_ITEMS, {"outcome": "send_failed"}, "rate"),  # summed over signals
    # items the receivers refused (a memory_limiter or a full pipeline pushing back), summed over signals
    "refused": (COLLECTOR_ITEMS, {"outcome": "refused"}, "rate"),
}
