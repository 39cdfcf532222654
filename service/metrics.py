"""The service's Prometheus metrics (prometheus_client's default registry, served on
/metrics). Labels never carry a secret: actions, event types, instance ids, statuses."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PUBLISHED = Counter(
    "ccc_bridge_events_published",
    "Events Kafka acknowledged, by CloudEvents type and CCC instance.",
    ["type", "instance"],
)
POLL_CYCLE_SECONDS = Histogram(
    "ccc_bridge_poll_cycle_seconds",
    "Duration of one poll cycle (read CCC, publish, checkpoint).",
    ["stream", "instance"],
)
POLL_LAG_SECONDS = Gauge(
    "ccc_bridge_poll_lag_seconds",
    "Seconds since the stream's last cycle that completed (grows while CCC or Kafka fail).",
    ["stream", "instance"],
)
CCC_CALLS = Counter(
    "ccc_bridge_ccc_calls",
    "CCC API calls, retries included, by action and outcome (ok or CCC's error code).",
    ["action", "outcome"],
)
CCC_CALL_SECONDS = Histogram(
    "ccc_bridge_ccc_call_seconds", "Latency of one CCC API request.", ["action"]
)
COMMANDS = Counter(
    "ccc_bridge_commands", "Command results published, by kind and status.", ["kind", "status"]
)
LEDGER_ENTRIES = Gauge(
    "ccc_bridge_ledger_entries", "Command ledger entries held for the partitions owned."
)
COMMAND_LAG = Gauge(
    "ccc_bridge_command_consumer_lag",
    "Command messages not yet committed by this process's workers, per command topic.",
    ["topic"],
)
HTTP_COMMANDS = Counter(
    "ccc_bridge_http_commands",
    "POST /v1/commands answers, by command kind and HTTP status.",
    ["kind", "status"],
)
