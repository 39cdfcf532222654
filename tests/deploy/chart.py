"""The Helm chart rendered by Helm's own Go SDK, which helm-python-sdk bundles as a C library:
no helm binary, no cluster and no network."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import yaml

from tests.deploy import ROOT

CHART = ROOT / "helm" / "ccc-bridge"
RELEASE = "ccc-bridge"
NAMESPACE = "ccc"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the oldest schema
# kubernetes-validate ships: a field newer than that fails validation.
KUBERNETES_VERSION = "1.25.0"

Manifest = dict[str, Any]


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every manifest of an install, NOTES.txt left out."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        manifest
        for name, text in sorted(files.items())
        if name.endswith(".yaml")
        for manifest in yaml.safe_load_all(text)
        if manifest
    ]


def only(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} manifests of kind {kind}"
    return found[0]
