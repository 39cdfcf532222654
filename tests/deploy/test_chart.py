"""The Helm chart: rendered and linted by Helm's own Go SDK, every manifest checked against
Kubernetes' schemas, and what it hands the service read back through the service's settings."""

from __future__ import annotations

import base64
import http.server
import json
import math
import os
import re
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

# jsonschema ships no type information (types-jsonschema is not a dependency).
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from pydantic import BaseModel, SecretStr

from scripts import chart_schema
from service.settings import HttpSettings, Settings, load_settings
from tests.deploy import PYPROJECT
from tests.deploy.chart import CHART, KUBERNETES_VERSION, RELEASE, Manifest, only, render
from tests.deploy.dockerfile import runtime_user

SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
with helm.Chart.load(CHART) as _chart:
    DEFAULTS = _chart.values
    METADATA = _chart.metadata
APP_VERSION = METADATA["appVersion"]

# Lists and large numbers go as JSON, an empty string stays empty, a float stays a float.
CUSTOM_CONFIG: dict[str, Any] = {
    "ccc": {
        "instances": ["ccc-a", "ccc-b", "ccc-c"],
        "auth": "sts",
        "rate_limits": {"per_action": {"DialEx": 5.0}},
    },
    "kafka": {
        "bootstrap_servers": "kafka-0:9093,kafka-1:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "ccc-bridge",
        "ssl_cafile": "/etc/kafka-tls/ca.crt",
    },
    "topics": {"prefix": "", "retention_ms": 1_209_600_000, "replication_factor": 3},
    "commands": {"default_expiry_s": 600},
    "http": {"port": 9090, "admin_port": 9100},
    "lifecycle": {"shutdown_budget_s": 45.5},
}
CUSTOM: dict[str, Any] = {
    "image": {"repository": "registry.example/ccc-bridge", "tag": "1.2.3"},
    "config": CUSTOM_CONFIG,
    "existingSecret": "ccc-bridge-credentials",
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "extraVolumes": [{"name": "kafka-tls", "secret": {"secretName": "kafka-tls"}}],
    "extraVolumeMounts": [{"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": True}],
}
# Every secret setting, each value marked so that a leak can be found by its value (a webhook
# secret is a Standard Webhooks one: whsec_, then base64).
MARKS = ("secret-", "whsec_")
SECRETS: dict[str, Any] = {
    "ccc": {
        "access_key_id": "secret-access-key-id",
        "access_key_secret": "secret-access-key-secret",
        "security_token": "secret-security-token",
        "bearer_token": "secret-bearer-token",
    },
    "kafka": {"sasl_password": "secret-sasl-password"},
    "http": {"api_keys": ["secret-api-key-1", "secret-api-key-2"]},
    "webhooks": {
        "endpoints": [
            {
                "name": "crm",
                "url": "https://crm.example/hooks/ccc",
                "event_types": ["com.aliyun.ccc.*"],
                "secret": "whsec_"
                + base64.b64encode(b"secret-webhook-signing-key-32byte").decode(),
            }
        ]
    },
}
WITH_SECRETS = {"secrets": SECRETS}
ROLE_ARN = "acs:ram::1234567890123456:role/ccc-bridge"
OIDC_PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0123456789"
RRSA = {"rrsa": {"enabled": True, "roleArn": ROLE_ARN, "oidcProviderArn": OIDC_PROVIDER_ARN}}
# Every optional part on, the defaults of the others changed.
PLATFORM: dict[str, Any] = {
    "image": {"digest": "sha256:" + "0" * 64},
    "strategy": {"type": "Recreate"},
    "priorityClassName": "business-critical",
    "extraEnv": [{"name": "TZ", "value": "Asia/Shanghai"}],
    "service": {"annotations": {"service.beta.kubernetes.io/alibaba-cloud-loadbalancer": "x"}},
    "podAntiAffinity": {"type": "hard", "topologyKey": "topology.kubernetes.io/zone"},
    "networkPolicy": {
        "enabled": True,
        "ingress": {"adminFrom": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]},
        "egress": {"kafkaTo": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]},
    },
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "CCC"}},
}
VALUES = {
    "default": {},
    "custom": CUSTOM,
    "secrets": WITH_SECRETS,
    "rrsa": RRSA,
    "platform": PLATFORM,
}
every_values = pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())

SECRET_SETTINGS = [
    (section, field)
    for section, fields in SCHEMA["properties"]["secrets"]["properties"].items()
    for field in fields["properties"]
]


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(manifests: list[Manifest]) -> dict[str, Any]:
    (found,) = pod_spec(manifests)["containers"]
    return typing.cast("dict[str, Any]", found)


@every_values
def test_helm_lint_is_clean(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    # Helm's one remark, at info level: the project publishes no icon for Chart.yaml.
    icon = {"severity": 1, "path": "Chart.yaml", "error": "icon is recommended"}
    assert [message for message in report["messages"] if message != icon] == []
    assert report["errors"] == []


@pytest.mark.parametrize(
    ("values", "optional"),
    [
        ({}, set()),
        (CUSTOM, {"HorizontalPodAutoscaler", "ServiceMonitor"}),
        (WITH_SECRETS, {"Secret"}),
        (RRSA, set()),
        (PLATFORM, {"NetworkPolicy", "ServiceMonitor", "PrometheusRule"}),
    ],
    ids=VALUES.keys(),
)
def test_what_is_rendered(values: dict[str, Any], optional: set[str]) -> None:
    always = {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount", "Pod"}
    assert {m["kind"] for m in render(values)} == always | optional


@every_values
def test_every_manifest_is_valid_kubernetes(values: dict[str, Any]) -> None:
    manifests = render(values)
    unknown = set()
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(manifest["kind"])
    # Prometheus Operator CRDs have no schema among Kubernetes' own: the ServiceMonitor is
    # checked against the Service it scrapes instead, the PrometheusRule's rules by promtool
    # (test_monitoring.py). Nothing else may go unchecked.
    assert unknown == {m["kind"] for m in manifests} & {"ServiceMonitor", "PrometheusRule"}


def test_validation_is_strict() -> None:
    """A misspelt field fails, so the check above can fail."""
    deployment = only(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_service_monitor_scrapes_metrics_from_the_service() -> None:
    manifests = render(CUSTOM)
    monitor, service = only(manifests, "ServiceMonitor"), only(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("admin", "/metrics")]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # our `endpoint` label
    assert "admin" in service_ports


@every_values
def test_selectors_pick_the_pods(values: dict[str, Any]) -> None:
    manifests = render(values)
    deployment = only(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert only(manifests, "Service")["spec"]["selector"].items() <= pod_labels
    pdb = only(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels


@every_values
def test_every_manifest_has_the_standard_labels(values: dict[str, Any]) -> None:
    standard = {
        "helm.sh/chart": f"{METADATA['name']}-{METADATA['version']}",
        "app.kubernetes.io/name": "ccc-bridge",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
    }
    for manifest in render(values):
        # The test pod is named apart, so that no selector of the release picks it.
        labels = manifest["metadata"]["labels"] | (
            {"app.kubernetes.io/name": "ccc-bridge"} if manifest["kind"] == "Pod" else {}
        )
        assert standard.items() <= labels.items(), manifest["kind"]


def settings_variables(manifests: list[Manifest]) -> dict[str, str]:
    """What the service reads: the ConfigMap's env vars and the Secret's files, by name."""
    (config_map,) = (
        m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == RELEASE
    )
    found = dict(config_map["data"])
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        found |= secret["stringData"]
    return found


@every_values
def test_every_variable_names_a_setting(values: dict[str, Any]) -> None:
    for name in settings_variables(render(values)):
        assert name.startswith("CCC_BRIDGE_"), name
        section, _, field = name.removeprefix("CCC_BRIDGE_").lower().partition("__")
        assert section in Settings.model_fields, name
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        assert field in model.model_fields, name


def mount(secret: Manifest, directory: Path) -> None:
    """Lay the Secret out as the kubelet does: each key a link into `..data`, itself a link
    to a timestamped directory."""
    payload = directory / "..2026_11_24_00_00_00.000000000"
    payload.mkdir()
    for key, value in secret["stringData"].items():
        (payload / key).write_text(value, encoding="utf-8")
        (directory / key).symlink_to(Path("..data") / key)
    (directory / "..data").symlink_to(payload.name)


def revealed(settings: Settings) -> Any:
    """The settings as plain JSON values, secrets shown."""
    dumped = json.dumps(
        settings.model_dump(),
        default=lambda v: v.get_secret_value() if isinstance(v, SecretStr) else str(v),
    )
    return json.loads(dumped)


def assert_within(given: Any, read: Any, where: str = "") -> None:
    """Every value given is the value read; mappings read may hold more (defaults)."""
    if isinstance(given, dict):
        for key, value in given.items():
            assert_within(value, read[key], f"{where}.{key}")
    elif isinstance(given, list):
        assert len(read) == len(given), where
        for index, (one_given, one_read) in enumerate(zip(given, read, strict=True)):
            assert_within(one_given, one_read, f"{where}[{index}]")
    else:
        assert read == given, where


@pytest.mark.parametrize(
    ("config", "secrets"),
    [(DEFAULTS["config"], {}), (CUSTOM_CONFIG, SECRETS)],
    ids=["default", "custom"],
)
def test_the_service_reads_what_the_chart_gives_it(
    config: dict[str, Any],
    secrets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The pod's environment and secret mount, handed to the service's own settings loader."""
    manifests = render({"config": config, "secrets": secrets})
    for name in list(os.environ):
        if name.startswith("CCC_BRIDGE_"):
            monkeypatch.delenv(name)
    for name, value in only(manifests, "ConfigMap")["data"].items():
        monkeypatch.setenv(name, value)
    if secrets:
        mount(only(manifests, "Secret"), tmp_path)
    # tmp_path stands for the mount path, which the test below holds equal to this variable.
    monkeypatch.setenv("CCC_BRIDGE_SECRETS_DIR", str(tmp_path))
    settings = revealed(load_settings())
    assert_within(config, settings)
    assert_within(secrets, settings)


@pytest.mark.parametrize(
    ("values", "secret_name"),
    [(WITH_SECRETS, "ccc-bridge"), (CUSTOM, "ccc-bridge-credentials")],
    ids=["secrets", "existingSecret"],
)
def test_the_secret_is_mounted_where_the_service_reads_files(
    values: dict[str, Any], secret_name: str
) -> None:
    manifests = render(values)
    env = {variable["name"]: variable["value"] for variable in container(manifests)["env"]}
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(manifests)["volumes"]}
    assert mounts["secrets"] == {
        "name": "secrets",
        "mountPath": env["CCC_BRIDGE_SECRETS_DIR"],
        "readOnly": True,
    }
    assert volumes["secrets"]["secret"]["secretName"] == secret_name
    # The service runs as a non-root user: the files are readable through the pod's fsGroup.
    assert volumes["secrets"]["secret"]["defaultMode"] & 0o040
    assert pod_spec(manifests)["securityContext"]["fsGroup"] == runtime_user()[1]


def test_rrsa_projects_a_token_for_sts_where_the_service_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = render(RRSA)
    account = only(manifests, "ServiceAccount")["metadata"]
    assert account["annotations"] == {"pod-identity.alibabacloud.com/role-name": "ccc-bridge"}
    (token,) = pod_spec(manifests)["volumes"][-1]["projected"]["sources"]
    assert token["serviceAccountToken"]["audience"] == "sts.aliyuncs.com"
    mounts = {m["name"]: m["mountPath"] for m in container(manifests)["volumeMounts"]}
    for name in list(os.environ):
        if name.startswith("CCC_BRIDGE_"):
            monkeypatch.delenv(name)
    for name, value in only(manifests, "ConfigMap")["data"].items():
        monkeypatch.setenv(name, value)
    ccc = load_settings().ccc
    assert (ccc.auth, ccc.role_arn, ccc.oidc_provider_arn) == (
        "oidc_role_arn",
        ROLE_ARN,
        OIDC_PROVIDER_ARN,
    )
    assert ccc.oidc_token_file == Path(mounts["rrsa-token"]) / token["serviceAccountToken"]["path"]


def test_without_secrets_nothing_is_mounted() -> None:
    manifests = render()
    assert "secrets" not in {volume["name"] for volume in pod_spec(manifests)["volumes"]}


def test_secrets_and_existing_secret_together_are_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="not both"):
        render({"secrets": SECRETS, "existingSecret": "ccc-bridge-credentials"})


def marked(value: Any) -> set[str]:
    """The marked secret strings within a value."""
    if isinstance(value, dict):
        return set().union(*(marked(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(marked(v) for v in value))
    return {value} if isinstance(value, str) and value.startswith(MARKS) else set()


def test_secrets_are_in_the_secret_and_nowhere_else() -> None:
    manifests = render(WITH_SECRETS)
    texts = {m["kind"]: yaml.safe_dump(m) for m in manifests}
    secret = texts.pop("Secret")
    assert all(value in secret for value in marked(SECRETS))
    leaks = {
        kind: found
        for kind, text in texts.items()
        if (found := [value for value in marked(SECRETS) if value in text])
    }
    assert leaks == {}


@pytest.mark.parametrize(("section", "field"), SECRET_SETTINGS)
def test_a_secret_given_as_config_is_refused(section: str, field: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=rf"config\.{section}\.{field} is a secret"):
        render({"config": {section: {field: "secret-in-the-wrong-place"}}})


def holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(holds_secret(field.annotation) for field in annotation.model_fields.values())
    return any(holds_secret(argument) for argument in typing.get_args(annotation))


def test_every_secret_setting_has_its_place_in_the_secret() -> None:
    """A SecretStr added to the settings fails here until the chart treats it as a secret."""
    held = set()
    for section, section_field in Settings.model_fields.items():
        model = section_field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        held |= {
            (section, name) for name, f in model.model_fields.items() if holds_secret(f.annotation)
        }
    # The access key id is no secret to the settings, but the chart keeps it with its pair.
    assert held == set(SECRET_SETTINGS) - {("ccc", "access_key_id")}


def test_schema_config_sections_are_the_settings_sections() -> None:
    assert set(SCHEMA["properties"]["config"]["properties"]) == set(Settings.model_fields)


def test_schema_is_draft_7_so_helm_3_reads_it_too() -> None:
    Draft7Validator.check_schema(SCHEMA)


def test_schema_config_and_secrets_are_generated_from_the_settings() -> None:
    assert chart_schema.generate(SCHEMA) == SCHEMA, "run python -m scripts.chart_schema"


def test_helm_accepts_every_setting_at_its_default() -> None:
    """The generated schema is no stricter than the service: each default passes it."""
    defaults = Settings().model_dump(mode="json")
    config = {
        section: {
            field: value
            for field, value in fields.items()
            if (section, field) not in SECRET_SETTINGS
        }
        for section, fields in defaults.items()
    }
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values({"config": config, "secrets": SECRETS}))


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"terminationGraceMarginSeconds": 0}, "/terminationGraceMarginSeconds"),
        (
            {"config": {"lifecycle": {"shutdown_budget_s": 0}}},
            "/config/lifecycle/shutdown_budget_s",
        ),
        ({"config": {"tracing": {"enabled": True}}}, "/config"),
        ({"secrets": {"ccc": {"access_key_secret": ""}}}, "/secrets/ccc/access_key_secret"),
        ({"probes": {"liveness": {"httpGet": {"path": "/"}}}}, "/probes/liveness"),
        ({"secrets": {"http": {"api_keys": [""]}}}, "/secrets/http/api_keys/0"),
        ({"secrets": {"http": {"api_keys": ["short-key"]}}}, "/secrets/http/api_keys/0"),
        ({"secrets": {"http": {"api_keys": ["sixteen chars ok"]}}}, "/secrets/http/api_keys/0"),
        ({"config": {"ccc": {"auth": "ram_role"}}}, "/config/ccc/auth"),
        ({"rrsa": {"enabled": True, "oidcProviderArn": OIDC_PROVIDER_ARN}}, "/rrsa/roleArn"),
        ({"config": {"kafka": {"bootstrap_server": "kafka:9092"}}}, "/config/kafka"),
        ({"config": {"pollers": {"calls_interval_s": "10s"}}}, "/config/pollers/calls_interval_s"),
        ({"config": {"log": {"level": "loud"}}}, "/config/log/level"),
        ({"config": {"ccc": {"retry": {"max_attempt": 3}}}}, "/config/ccc/retry"),
        (
            {
                "secrets": {
                    "webhooks": {"endpoints": [{"name": "crm", "url": "https://crm.example"}]}
                }
            },
            "/secrets/webhooks/endpoints/0",
        ),
    ],
    ids=[
        "replicaCount",
        "margin",
        "budget",
        "section",
        "empty-secret",
        "probe-path",
        "empty-api-key",
        "short-api-key",
        "api-key-with-space",
        "unknown-auth",
        "rrsa-without-role",
        "misspelt-setting",
        "mistyped-setting",
        "unknown-choice",
        "misspelt-nested-setting",
        "endpoint-without-secret",
    ],
)
def test_helm_refuses_values_the_schema_forbids(values: dict[str, Any], where: str) -> None:
    """Through Helm's own schema check, on the values an install would use (defaults merged),
    so each case fails for its own value only."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(chart.merge_values(values))
    assert re.findall(r"at '([^']*)'", str(refused.value)) == [where]


@pytest.mark.parametrize(
    "budget", [DEFAULTS["config"]["lifecycle"]["shutdown_budget_s"], 45.5, 0.2]
)
def test_grace_period_outlasts_the_shutdown_budget(budget: float) -> None:
    manifests = render({"config": {"lifecycle": {"shutdown_budget_s": budget}}})
    grace = pod_spec(manifests)["terminationGracePeriodSeconds"]
    assert grace == math.ceil(budget) + DEFAULTS["terminationGraceMarginSeconds"]
    assert grace > budget
    assert (
        float(only(manifests, "ConfigMap")["data"]["CCC_BRIDGE_LIFECYCLE__SHUTDOWN_BUDGET_S"])
        == budget
    )


def pod_annotations(values: dict[str, Any]) -> dict[str, str]:
    deployment = only(render(values), "Deployment")
    annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
    return annotations


def test_pods_roll_when_config_or_secrets_change() -> None:
    before = pod_annotations(WITH_SECRETS)
    config = pod_annotations(WITH_SECRETS | {"config": {"log": {"level": "debug"}}})
    secret = pod_annotations({"secrets": SECRETS | {"kafka": {"sasl_password": "secret-new"}}})
    assert config["checksum/config"] != before["checksum/config"]
    assert config["checksum/secret"] == before["checksum/secret"]
    assert secret["checksum/secret"] != before["checksum/secret"]
    assert secret["checksum/config"] == before["checksum/config"]
    # A Secret managed elsewhere cannot be summed: docs/deploy.md says to restart.
    assert "checksum/secret" not in pod_annotations(CUSTOM)


@pytest.mark.parametrize(
    ("values", "port", "admin"),
    [({}, HttpSettings().port, 9090), (CUSTOM, 9090, 9100)],
    ids=["default", "custom"],
)
def test_probes_ask_livez_and_readyz_on_the_admin_port(
    values: dict[str, Any], port: int, admin: int
) -> None:
    manifests = render(values)
    probes = {
        kind: (
            container(manifests)[kind]["httpGet"]["path"],
            container(manifests)[kind]["httpGet"]["port"],
        )
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/livez", "admin"),
        "livenessProbe": ("/livez", "admin"),
        "readinessProbe": ("/readyz", "admin"),
    }
    assert container(manifests)["ports"] == [
        {"name": "http", "containerPort": port, "protocol": "TCP"},
        {"name": "admin", "containerPort": admin, "protocol": "TCP"},
    ]
    data = only(manifests, "ConfigMap")["data"]
    assert (data["CCC_BRIDGE_HTTP__PORT"], data["CCC_BRIDGE_HTTP__ADMIN_PORT"]) == (
        str(port),
        str(admin),
    )
    service_ports = only(manifests, "Service")["spec"]["ports"]
    assert [(p["name"], p["targetPort"]) for p in service_ports] == [
        ("http", "http"),
        ("admin", "admin"),
    ]


def test_the_api_and_admin_ports_must_differ() -> None:
    with pytest.raises(helm.HelmError, match="must differ"):
        render({"config": {"http": {"port": 9090}}})


@every_values
def test_pod_runs_locked_down_as_the_image_user(values: dict[str, Any]) -> None:
    manifests = render(values)
    uid, gid = runtime_user()
    pod = pod_spec(manifests)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(manifests)["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in container(manifests)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's /tmp, writable


def test_custom_values_reach_the_pod() -> None:
    manifests = render(CUSTOM)
    assert container(manifests)["image"] == "registry.example/ccc-bridge:1.2.3"
    assert container(manifests)["resources"] == CUSTOM["resources"]
    assert CUSTOM["extraVolumeMounts"][0] in container(manifests)["volumeMounts"]
    assert CUSTOM["extraVolumes"][0] in pod_spec(manifests)["volumes"]


def test_the_autoscaler_owns_the_replica_count() -> None:
    manifests = render(CUSTOM)
    deployment = only(manifests, "Deployment")
    autoscaler = only(manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (3, 6)
    assert only(render(), "Deployment")["spec"]["replicas"] == DEFAULTS["replicaCount"]


def test_chart_deploys_this_release_by_default() -> None:
    assert PYPROJECT["project"]["version"] == APP_VERSION
    assert container(render())["image"] == f"{DEFAULTS['image']['repository']}:{APP_VERSION}"


def test_custom_image_digest_overrides_the_tag() -> None:
    image = container(render({"image": {"tag": "1.2.3"} | PLATFORM["image"]}))["image"]
    assert image == f"{DEFAULTS['image']['repository']}@{PLATFORM['image']['digest']}"


@pytest.mark.parametrize("digest", ["0" * 64, "sha256:abc", "latest"])
def test_a_malformed_digest_is_refused(digest: str) -> None:
    with (
        helm.Chart.load(CHART) as chart,
        pytest.raises(helm.HelmValuesError, match="/image/digest"),
    ):
        chart.validate_schema(chart.merge_values({"image": {"digest": digest}}))


def test_replicas_prefer_different_nodes_by_default() -> None:
    manifests = render()
    anti = pod_spec(manifests)["affinity"]["podAntiAffinity"]
    (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    pod_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert anti.keys() == {"preferredDuringSchedulingIgnoredDuringExecution"}


@pytest.mark.parametrize(
    ("values", "affinity"),
    [
        (
            {"podAntiAffinity": {"type": "hard", "topologyKey": "topology.kubernetes.io/zone"}},
            {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {
                                "matchLabels": {
                                    "app.kubernetes.io/name": "ccc-bridge",
                                    "app.kubernetes.io/instance": RELEASE,
                                }
                            },
                            "topologyKey": "topology.kubernetes.io/zone",
                        }
                    ]
                }
            },
        ),
        ({"podAntiAffinity": {"type": "none"}}, None),
        ({"affinity": {"podAntiAffinity": {}}}, {"podAntiAffinity": {}}),
    ],
    ids=["hard", "none", "own"],
)
def test_the_spread_can_be_required_dropped_or_replaced(
    values: dict[str, Any], affinity: dict[str, Any] | None
) -> None:
    assert pod_spec(render(values)).get("affinity") == affinity


def test_other_affinity_keeps_the_spread() -> None:
    node: dict[str, Any] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
    }
    affinity = pod_spec(render({"affinity": {"nodeAffinity": node}}))["affinity"]
    assert affinity["nodeAffinity"] == node
    assert "preferredDuringSchedulingIgnoredDuringExecution" in affinity["podAntiAffinity"]


@pytest.mark.parametrize(
    ("values", "strategy"),
    [
        ({}, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        (PLATFORM, {"type": "Recreate"}),
    ],
    ids=["default", "recreate"],
)
def test_rollout_strategy(values: dict[str, Any], strategy: dict[str, Any]) -> None:
    assert only(render(values), "Deployment")["spec"]["strategy"] == strategy


def test_optional_pod_and_service_settings_are_off_by_default() -> None:
    manifests = render()
    assert "priorityClassName" not in pod_spec(manifests)
    assert [v["name"] for v in container(manifests)["env"]] == ["CCC_BRIDGE_SECRETS_DIR"]
    assert "annotations" not in only(manifests, "Service")["metadata"]


def test_optional_pod_and_service_settings_reach_their_place() -> None:
    manifests = render(PLATFORM)
    assert pod_spec(manifests)["priorityClassName"] == PLATFORM["priorityClassName"]
    assert container(manifests)["env"][1:] == PLATFORM["extraEnv"]
    annotations = only(manifests, "Service")["metadata"]["annotations"]
    assert annotations == PLATFORM["service"]["annotations"]


def network_policy(values: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = only(render(values), "NetworkPolicy")["spec"]
    return spec


def test_the_network_policy_is_optional() -> None:
    assert "NetworkPolicy" not in {m["kind"] for m in render()}


def test_the_network_policy_opens_the_service_ports_and_its_upstreams() -> None:
    spec = network_policy(PLATFORM)
    pod_labels = only(render(PLATFORM), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    api, admin = spec["ingress"]
    assert api == {"ports": [{"port": "http", "protocol": "TCP"}]}  # from anyone
    test_pod = only(render(PLATFORM), "Pod")["metadata"]["labels"]
    (*peers, test_peer) = admin["from"]
    assert peers == PLATFORM["networkPolicy"]["ingress"]["adminFrom"]
    assert test_peer["podSelector"]["matchLabels"].items() <= test_pod.items()
    ports = [[(p["port"], p["protocol"]) for p in rule["ports"]] for rule in spec["egress"]]
    assert ports == [[(53, "UDP"), (53, "TCP")], [(9092, "TCP")], [(443, "TCP")]]
    assert spec["egress"][1]["to"] == PLATFORM["networkPolicy"]["egress"]["kafkaTo"]


@pytest.mark.parametrize(
    ("kafka", "ports"),
    [
        ({"bootstrap_servers": "k-0:9093, k-1:9093,k-2"}, [9093, 9092]),
        ({"bootstrap_servers": "[::1]:19092"}, [19092]),
    ],
)
def test_kafka_egress_follows_the_bootstrap_servers(
    kafka: dict[str, Any], ports: list[int]
) -> None:
    spec = network_policy({"networkPolicy": {"enabled": True}, "config": {"kafka": kafka}})
    assert [p["port"] for p in spec["egress"][1]["ports"]] == ports


def test_kafka_ports_and_extra_rules_can_be_given() -> None:
    extra = [{"ports": [{"port": 8443, "protocol": "TCP"}]}]
    spec = network_policy(
        {
            "networkPolicy": {
                "enabled": True,
                "egress": {"kafkaPorts": [9094, 9095]},
                "extraEgress": extra,
                "extraIngress": extra,
            }
        }
    )
    assert [p["port"] for p in spec["egress"][1]["ports"]] == [9094, 9095]
    assert spec["egress"][-1:] == extra
    assert spec["ingress"][-1:] == extra


def test_the_ecs_ram_role_reaches_the_metadata_service() -> None:
    spec = network_policy(
        {"networkPolicy": {"enabled": True}, "config": {"ccc": {"auth": "ecs_ram_role"}}}
    )
    assert spec["egress"][-1] == {
        "ports": [{"port": 80, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "100.100.100.200/32"}}],
    }


def test_the_test_pod_is_a_helm_test_that_no_selector_takes() -> None:
    manifests = render()
    pod = only(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = pod["metadata"]["labels"].items()
    assert not only(manifests, "Service")["spec"]["selector"].items() <= labels
    assert not only(manifests, "Deployment")["spec"]["selector"]["matchLabels"].items() <= labels
    (check,) = pod["spec"]["containers"]
    assert check["image"] == container(manifests)["image"]
    service = only(manifests, "Service")
    admin_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "admin")
    assert check["command"][-1] == f"http://{service['metadata']['name']}:{admin_port}/readyz"


class Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"status": "ready"}' if self.path == "/readyz" else b"not found"
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "passes"), [(200, True), (503, False)])
def test_the_test_pods_command_passes_only_on_a_ready_service(status: int, passes: bool) -> None:
    """Its command, run here with this Python against a local /readyz."""
    handler = type("Handler", (Readyz,), {"status": status})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (check,) = only(render(), "Pod")["spec"]["containers"]
        python, flag, script, url = check["command"]
        local = re.sub(r"//[^/]+/", f"//127.0.0.1:{server.server_address[1]}/", url)
        done = subprocess.run(  # noqa: S603 - the chart's own command
            [sys.executable, flag, script, local],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        server.shutdown()
    assert python == "python"
    assert (done.returncode == 0) is passes, done.stdout + done.stderr
    assert str(status) in done.stdout
