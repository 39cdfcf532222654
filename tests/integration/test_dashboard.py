"""The chart's Grafana dashboard against what a running service exposes on /metrics: every
query's metrics, with every label it names (the rules of test_alerts.py)."""

from __future__ import annotations

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from tests.deploy.test_monitoring import dashboard_queries
from tests.integration.test_alerts import needed_by, scrape_busy_service

# Labels the Prometheus Operator attaches to every series it scrapes, which the dashboard
# filters by: not the service's to expose.
ATTACHED = {"namespace"}


async def test_every_dashboard_query_selects_what_a_running_service_exposes(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    needed = {name: labels - ATTACHED for name, labels in needed_by(dashboard_queries()).items()}
    assert len(needed) > 10
    await scrape_busy_service(broker, emulator_busy, needed, "dashboard queries")
