"""`ccc-bridge config check` as an operator runs it: every layer (defaults, config/default.yaml,
--config, secret files, env vars) named beside the values it set, secrets masked, and a bad
setting named with its reason and exit code 2; no Kafka and no CCC anywhere (the bootstrap
address is a closed port)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.kafka_io import run_cli
from tests.integration.pipeline import free_port

SECRET = "hunter2-very-secret"


async def test_config_check_names_the_layer_of_each_value_and_masks_secrets(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "ccc:\n  instances: [ccc-a]\n"
        "webhooks:\n  endpoints:\n"
        f"    - {{name: crm, url: 'https://u:{SECRET}@crm.example/hook?token={SECRET}',"
        " secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\n",
        encoding="utf-8",
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "CCC_BRIDGE_CCC__ACCESS_KEY_SECRET").write_text(SECRET, encoding="utf-8")
    env = {
        "CCC_BRIDGE_SECRETS_DIR": str(secrets),
        "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "CCC_BRIDGE_CCC__ACCESS_KEY_ID": "LTAI-id",
        "CCC_BRIDGE_KAFKA__SASL_PASSWORD": SECRET,
    }
    code, out, err = await run_cli("config", "check", "--config", str(config), env=env)
    assert (code, err) == (0, ""), out
    assert SECRET not in out
    rows = {line.split(" = ")[0].strip(): line.split(" = ")[1] for line in out.splitlines()}
    assert rows["ccc.region"] == '"cn-shanghai"  (config/default.yaml)'
    assert rows["ccc.instances"] == f'["ccc-a"]  ({config})'
    assert rows["ccc.access_key_secret"] == (
        f'"**********"  (secret file {secrets}/CCC_BRIDGE_CCC__ACCESS_KEY_SECRET)'
    )
    assert rows["ccc.access_key_id"] == '"LTAI-id"  (env CCC_BRIDGE_CCC__ACCESS_KEY_ID)'
    assert rows["kafka.sasl_password"] == '"**********"  (env CCC_BRIDGE_KAFKA__SASL_PASSWORD)'
    assert rows["webhooks.endpoints.0.secret"] == f'"**********"  ({config})'
    assert rows["webhooks.endpoints.0.url"] == (
        f'"https://**********@crm.example/hook?**********"  ({config})'
    )
    assert rows["ccc.role_session_name"] == '"ccc-bridge"  (default)'


async def test_config_check_names_a_bad_field_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("http:\n  port: 70000\ncommands:\n  concurency: 3\n", encoding="utf-8")
    code, out, err = await run_cli(
        "config", "check", "--config", str(config), env={"CCC_BRIDGE_LOG__LEVEL": "loud"}
    )
    assert (code, out) == (2, "")
    assert err.startswith("ccc-bridge config check: bad configuration: ")
    assert "http.port: Input should be less than or equal to 65535" in err
    assert "commands.concurency: Extra inputs are not permitted" in err
    assert "log.level: Input should be 'debug', 'info', 'warning' or 'error'" in err
