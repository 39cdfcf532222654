"""The installed package's version, for documents the service publishes about itself."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def service_version() -> str:
    try:
        return version("ccc-bridge")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"
