"""The alerts of docs/operations.md against what a running service exposes on /metrics.

Extraction rule: in docs/operations.md, every table with an `expression` column in its header row;
each `code span` in that column is one PromQL expression (write `|` in it as `\\|`, as
Markdown tables need). Each must parse (promql-parser, Prometheus' grammar), and every
metric it selects must be on /metrics with every label it names: in matchers, `by` and
`without`, `on` and `ignoring`. A histogram is selected by its `_bucket`, `_sum` or `_count`
series, a counter by its `_total` one, as Prometheus stores them.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from promql_parser import (
    AggregateExpr,
    BinaryExpr,
    Expr,
    VectorSelector,
    parse,
    walk,
)

from service.broker import EmbeddedBroker
from service.emulator.server import EmulatorServer
from service.version import service_version
from tests.inspection import eventually
from tests.integration.commands import send
from tests.integration.kafka_io import ROOT
from tests.integration.pipeline import in_process, service_settings
from tests.integration.test_http import dial_message, get, status_is, with_http
from tests.integration.test_webhooks import with_webhooks
from tests.integration.webhooks import Receiver, endpoint, new_secret

# A code span, and the "for N min" written after it: how long the expression must hold.
ALERT_SPAN = re.compile(r"`([^`]+)`(?:\s+for (\d+) min)?")
CELL_BORDER = re.compile(r"(?<!\\)\|")  # a `|` not written `\|`
# Labels Prometheus attaches to every series it scrapes: one of ours by that name would be
# renamed `exported_<name>`, and an alert on it would read the target's instead.
TARGET_LABELS = {"instance", "job"}

Exposed = dict[str, set[str]]  # series name: every label name it carries


def documented_alerts(markdown: str) -> list[tuple[str, str | None]]:
    """Every code span in the `expression` column of the document's tables, with the
    duration written after it as Prometheus writes it ("5m"), if any."""
    alerts: list[tuple[str, str | None]] = []
    column: int | None = None  # of the table being read; -1 when it has none
    for line in markdown.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in CELL_BORDER.split(line.strip())[1:-1]]
        if column is None:  # the header row
            column = cells.index("expression") if "expression" in cells else -1
        elif 0 <= column < len(cells):
            alerts += [
                (code.replace("\\|", "|"), f"{minutes}m" if minutes else None)
                for code, minutes in ALERT_SPAN.findall(cells[column])
            ]
    return alerts


def alert_expressions(markdown: str) -> list[str]:
    return [expression for expression, _ in documented_alerts(markdown)]


def selectors(node: Expr) -> list[VectorSelector]:
    found: list[VectorSelector] = []

    def keep(inner: Expr) -> None:
        if isinstance(inner, VectorSelector):
            found.append(inner)

    walk(node, keep)
    return found


def grouping(node: Expr) -> list[str]:
    """The labels of its `by`/`without` or `on`/`ignoring`: every metric beneath needs them."""
    if isinstance(node, AggregateExpr) and node.modifier is not None:
        return node.modifier.labels
    if isinstance(node, BinaryExpr) and node.modifier and node.modifier.matching:
        return node.modifier.matching.labels
    return []


def named_labels(expr: Expr) -> Exposed:
    """The labels an expression needs on each metric it selects."""
    needed: Exposed = defaultdict(set)
    for selector in selectors(expr):
        assert selector.name, f"select a metric by its name: {selector}"
        groups = [selector.matchers.matchers, *selector.matchers.or_matchers]
        needed[selector.name] |= {matcher.name for group in groups for matcher in group}

    def visit(node: Expr) -> None:
        for selector in selectors(node) if grouping(node) else []:
            needed[str(selector.name)] |= set(grouping(node))

    walk(expr, visit)
    return needed


def exposed(text: str) -> Exposed:
    series: Exposed = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[sample.name] |= set(sample.labels)
    return series


def unexposed(needed: Exposed, found: Exposed) -> list[str]:
    return [
        f"{name} {sorted(labels - found[name])}" if name in found else name
        for name, labels in needed.items()
        if name not in found or not labels <= found[name]
    ]


OPERATIONS = ROOT / "docs" / "operations.md"
DOCUMENTED = documented_alerts(OPERATIONS.read_text(encoding="utf-8"))
ALERTS = [expression for expression, _ in DOCUMENTED]


def test_the_operations_page_lists_alerts_in_promql() -> None:
    assert ALERTS
    for expression in ALERTS:
        parse(expression)  # raises on anything but PromQL


def test_the_rule_finds_expressions_in_tables_with_that_column_only() -> None:
    markdown = (
        "| alert | expression | means |\n|---|---|---|\n"
        '| a | `rate(x_total{k=~"a\\|b"}[5m]) > 0` for 2 min, or `y > 1` | `not_this` |\n'
        "\n| metric | labels |\n|---|---|\n| `z` | `k` |\n"
    )
    assert alert_expressions(markdown) == ['rate(x_total{k=~"a|b"}[5m]) > 0', "y > 1"]
    assert documented_alerts(markdown)[0][1] == "2m"


def test_labels_named_in_matchers_groupings_and_vector_matching_are_needed() -> None:
    expression = (
        'sum by (a) (rate(x_total{b!="1"}[5m])) / on (c) group_left sum without (d) (y) > 0'
    )
    assert named_labels(parse(expression)) == {"x_total": {"a", "b", "c"}, "y": {"c", "d"}}


def needed_by(expressions: list[str]) -> Exposed:
    """Every metric the expressions select, with every label they name on it."""
    needed: Exposed = defaultdict(set)
    for expression in expressions:
        for name, labels in named_labels(parse(expression)).items():
            needed[name] |= labels
    return needed


async def scrape_busy_service(
    broker: EmbeddedBroker, emulator: EmulatorServer, needed: Exposed, reader: str
) -> str:
    """/metrics of a running service once it exposes everything `needed` (else the test fails,
    naming what `reader` selects and /metrics lacks): commands, webhooks and every stream on,
    so that each series exists."""
    async with Receiver(new_secret()) as receiver:
        base = with_http(service_settings(emulator, broker.bootstrap_servers), commands=True)
        hook = endpoint(f"alerts-{uuid.uuid4().hex[:8]}", receiver)
        settings = base.model_copy(
            update={"webhooks": with_webhooks(base.kafka, base.topics, hook).webhooks}
        )
        async with in_process(settings):
            await eventually(lambda: status_is(settings, 200), deadline_s=30)
            await send(settings, [dial_message(f"alerts-{uuid.uuid4().hex[:8]}")])
            # No API key is configured: refused, and counted by kind and status.
            url = f"http://127.0.0.1:{settings.http.port}/v1/commands/dial"
            async with aiohttp.ClientSession() as http, http.post(url, json={}) as answer:
                assert answer.status == 401
            text = ""

            async def all_exposed() -> bool:
                nonlocal text
                _, text = await get(settings, "/metrics")
                return not unexposed(needed, exposed(text))

            try:
                await eventually(all_exposed, deadline_s=60)
            except AssertionError:
                missing = unexposed(needed, exposed(text))
                pytest.fail(f"{reader} select what /metrics lacks: {missing}")
    return text


async def test_every_alert_selects_what_a_running_service_exposes(
    broker: EmbeddedBroker, emulator_busy: EmulatorServer
) -> None:
    text = await scrape_busy_service(broker, emulator_busy, needed_by(ALERTS), "alerts")
    found = exposed(text)
    clashing = {name: labels & TARGET_LABELS for name, labels in found.items()}
    assert not {name: labels for name, labels in clashing.items() if labels}
    build = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ccc_bridge_build_info"
    ]
    assert build == [({"version": service_version()}, 1.0)]
