"""Settings layers: defaults, config/default.yaml, --config FILE, secret files, env vars."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service import settings as settings_module
from service.ccc.client import CccClient
from service.ccc.settings import CccSettings
from service.errors import ConfigError
from service.settings import DEFAULT_CONFIG, HttpSettings, Settings, load_settings
from service.validation import field_errors

CREDENTIALS = {"CCC_BRIDGE_CCC__ACCESS_KEY_ID": "ak", "CCC_BRIDGE_CCC__ACCESS_KEY_SECRET": "sk"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("CCC_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CCC_BRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_default_yaml_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _env(monkeypatch, CREDENTIALS)
    other = tmp_path / "default.yaml"
    other.write_text("ccc:\n  region: cn-beijing\n", encoding="utf-8")
    monkeypatch.setattr(settings_module, "DEFAULT_CONFIG", other)
    assert load_settings().ccc.url == "https://ccc.cn-beijing.aliyuncs.com"


def test_default_yaml_says_what_the_built_in_defaults_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel has no config/: it must act as a checkout does."""
    _env(monkeypatch, CREDENTIALS)
    assert DEFAULT_CONFIG.exists()
    with_yaml = load_settings()
    monkeypatch.setattr(settings_module, "DEFAULT_CONFIG", DEFAULT_CONFIG.with_name("absent"))
    assert load_settings() == with_yaml
    assert with_yaml.ccc.rate_limits.per_action["DialEx"] == 10.0


def test_a_per_action_limit_is_lifted_with_null_and_the_others_stay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Layers merge, so leaving DialEx out would keep its default: null is how to lift it."""
    _env(monkeypatch, CREDENTIALS)
    config = tmp_path / "c.yaml"
    config.write_text("ccc:\n  rate_limits:\n    per_action: {DialEx: null}\n", encoding="utf-8")
    limits = load_settings(config).ccc.rate_limits
    client = CccClient(CccSettings(access_key_id="a", access_key_secret="s", rate_limits=limits))
    assert client._limiter("DialEx") is None
    assert limits.per_action["SendPredefinedShortMessage"] == 20.0
    assert client._limiter("SendPredefinedShortMessage") is not None


def test_env_beats_config_file_beats_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "ccc:\n  region: cn-hangzhou\n  instances: [a]\n  retry: {max_attempts: 2}\n"
        "log: {level: debug}\n",
        encoding="utf-8",
    )
    _env(monkeypatch, CREDENTIALS | {"CCC_BRIDGE_CCC__INSTANCES": '["x", "y"]'})
    settings = load_settings(config)
    assert settings.ccc.instances == ["x", "y"]
    assert settings.ccc.region == "cn-hangzhou"
    assert settings.ccc.retry.max_attempts == 2
    assert settings.ccc.retry.backoff_max_s == 5.0  # merged, not replaced
    assert settings.log.level == "debug"


def test_secret_files_as_a_kubernetes_mount_gives_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "CCC_BRIDGE_CCC__ACCESS_KEY_SECRET").write_text("from-file", encoding="utf-8")
    monkeypatch.setenv("CCC_BRIDGE_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("CCC_BRIDGE_CCC__ACCESS_KEY_ID", "ak")
    settings = load_settings()
    assert settings.ccc.access_key_secret is not None
    assert settings.ccc.access_key_secret.get_secret_value() == "from-file"
    assert "from-file" not in repr(settings)
    assert "from-file" not in str(settings.model_dump())


def test_missing_credentials_name_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCC_BRIDGE_CCC__AUTH", "sts")
    monkeypatch.setenv("CCC_BRIDGE_CCC__ACCESS_KEY_ID", "ak")
    settings = load_settings()  # commands that never call CCC need no credentials
    with pytest.raises(ConfigError, match=r"needs ccc\.access_key_secret, ccc\.security_token$"):
        settings.ccc.credentials()
    with pytest.raises(ConfigError, match=r"'bearer' needs ccc\.bearer_token"):
        CccSettings(auth="bearer").credentials()


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_unknown_setting_and_unknown_rate_limited_action_are_refused() -> None:
    with pytest.raises(ValidationError, match="region_id"):
        Settings(ccc={"access_key_id": "a", "access_key_secret": "s", "region_id": "x"})
    with pytest.raises(ValidationError, match="'Dial' is not a CCC 2017-07-05 action"):
        CccSettings(
            access_key_id="a", access_key_secret="s", rate_limits={"per_action": {"Dial": 1}}
        )


def test_explicit_endpoint_wins_over_region() -> None:
    settings = CccSettings(
        endpoint="http://127.0.0.1:8090/", access_key_id="a", access_key_secret="s"
    )
    assert settings.url == "http://127.0.0.1:8090"
    with pytest.raises(ValidationError, match="endpoint"):
        CccSettings(endpoint="ftp://x", access_key_id="a", access_key_secret="s")


@pytest.mark.parametrize(
    "key", ["", "short-key", " " * 20, "sixteen chars ok", "key-with-\x01-control-char"]
)
def test_an_empty_short_or_unsendable_api_key_is_refused_naming_the_field(key: str) -> None:
    good = "a-good-key-0123456789"
    with pytest.raises(ValidationError) as refused:
        Settings(http={"api_keys": [good, key]})
    shown = field_errors(refused.value)
    assert shown.startswith("http.api_keys.1: Value error, an API key must be at least 16")
    assert good not in str(refused.value)
    if key.strip():
        assert key not in str(refused.value)
    with pytest.raises(ValidationError) as alone:
        HttpSettings(api_keys=[key])
    if key.strip():
        assert key not in str(alone.value)
    assert HttpSettings(api_keys=[good]).api_keys[0].get_secret_value() == good
