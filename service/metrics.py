"""The service's Prometheus metrics (prometheus_client's default registry, served on
/metrics). Labels never carry a secret: actions, event types, instance ids, statuses.

No label is named `instance` or `job`: Prometheus attaches those to every scraped series
itself and would rename ours to `exported_instance`. A CCC instance is `ccc_instance`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

BUILD = Info("ccc_bridge_build", "The running build: its ccc-bridge version (value always 1).")

EVENTS_PUBLISHED = Counter(
    "ccc_bridge_events_published",
    "Events Kafka acknowledged, by CloudEvents type and CCC instance.",
    ["type", "ccc_instance"],
)
EVENTS_TOO_LARGE = Counter(
    "ccc_bridge_events_too_large",
    "Events left out because they are larger than Kafka takes (kafka.max_record_bytes), by "
    "CloudEvents type and CCC instance: the event_too_large log line names each.",
    ["type", "ccc_instance"],
)
POLL_CYCLE_SECONDS = Histogram(
    "ccc_bridge_poll_cycle_seconds",
    "Duration of one poll cycle (read CCC, publish, checkpoint).",
    ["stream", "ccc_instance"],
)
POLL_LAG_SECONDS = Gauge(
    "ccc_bridge_poll_lag_seconds",
    "Seconds since the stream's last cycle that completed (grows while CCC or Kafka fail).",
    ["stream", "ccc_instance"],
)
STREAM_BEHIND_SECONDS = Gauge(
    "ccc_bridge_stream_behind_seconds",
    "How far a stream's published history trails CCC's clock: the oldest span not yet read "
    "in full (state logs: the furthest-behind agent; calls: the scan watermark).",
    ["stream", "ccc_instance"],
)
CCC_CALLS = Counter(
    "ccc_bridge_ccc_calls",
    "CCC API calls, retries included, by action and outcome (ok or CCC's error code).",
    ["action", "outcome"],
)
CCC_CALL_SECONDS = Histogram(
    "ccc_bridge_ccc_call_seconds", "Latency of one CCC API request.", ["action"]
)
CCC_UP = Gauge(
    "ccc_bridge_ccc_up",
    "1 while CCC answers this process, 0 since a call got no answer (a failed connection or "
    "a timeout; a 5xx is an answer) and until it answers again. /readyz does not depend on it.",
)
CONSUMER_ASSIGNED = Gauge(
    "ccc_bridge_consumer_assigned",
    "1 while the consumer group member holds its assignment (possibly no partitions), 0 "
    "while it joins or rebalances: commands, pollers. /readyz does not depend on it.",
    ["consumer"],
)
CCC_STREAM_CALLS = Counter(
    "ccc_bridge_ccc_stream_calls",
    "CCC API requests, retries included, by the stream they were made for (commands, or a "
    "poller's stream).",
    ["stream"],
)
CCC_BUDGET_WAIT_SECONDS = Histogram(
    "ccc_bridge_ccc_budget_wait_seconds",
    "Time a CCC request waited for the process's call budget (total cap, pollers' rate).",
    ["stream"],
)
CCC_POLLER_RATE_LIMIT = Gauge(
    "ccc_bridge_ccc_poller_rate_limit",
    "The pollers' CCC calls per second, as cut on throttling and raised again (AIMD); "
    "+Inf while not limited.",
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
WEBHOOK_DELIVERIES = Counter(
    "ccc_bridge_webhook_deliveries",
    "Webhook deliveries by endpoint and outcome: delivered (a 2xx), retried (an attempt that "
    "failed and is tried again), dead_lettered (on the webhook DLQ after the last attempt).",
    ["endpoint", "outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "ccc_bridge_webhook_delivery_seconds",
    "From an event's Kafka timestamp to the endpoint's 2xx: queueing and retries included.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
WEBHOOK_LAG = Gauge(
    "ccc_bridge_webhook_consumer_lag",
    "Events of the partitions an endpoint's dispatcher owns that are neither delivered nor "
    "dead-lettered yet: the partitions' end offsets less the first such event's offset.",
    ["endpoint"],
)
INSTANCE_POLLED = Gauge(
    "ccc_bridge_instance_polled",
    "1 while this process polls the CCC instance, 0 once it stopped (handed it to another "
    "replica, or stopping). Summed over the replicas: 1 per instance at steady state.",
    ["ccc_instance"],
)
