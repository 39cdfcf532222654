"""client_options: every security_protocol's KafkaSettings as aiokafka keyword arguments, the
settings that cannot work refused by name, and the SASL password kept out of what is shown.
tests/integration/test_kafka_security.py takes the same options to a broker."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from service.console import kafka_failure
from service.errors import ConfigError
from service.kafka.connection import client_options
from service.kafka.producer import Producer
from service.kafka.settings import KafkaSettings
from service.settings import Settings

PASSWORD = "pw-4f2c9e7a1b"  # distinctive, so any leak of it is found
PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ADDRESS = {"bootstrap_servers": "kafka-1:9093,kafka-2:9093", "client_id": "bridge-7"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="ccc-bridge test CA")


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def settings(protocol: str, **fields: Any) -> KafkaSettings:
    """Settings as a deployment gives them; SASL credentials unless overridden."""
    sasl = {"sasl_username": "bridge", "sasl_password": PASSWORD} if "SASL" in protocol else {}
    return KafkaSettings.model_validate(
        {**ADDRESS, "security_protocol": protocol, **sasl, **fields}
    )


def test_plaintext_gives_the_address_and_nothing_else() -> None:
    assert client_options(settings("PLAINTEXT")) == {**ADDRESS, "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_gets_sasl_and_tls_options_as_it_uses_them(protocol: str) -> None:
    options = client_options(settings(protocol))
    assert options["security_protocol"] == protocol
    assert ("sasl_mechanism" in options) == protocol.startswith("SASL_")
    assert ("ssl_context" in options) == protocol.endswith("SSL")


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_verifies_the_broker_and_its_name_against_the_configured_ca(
    protocol: str, cafile: Path
) -> None:
    context = client_options(settings(protocol, ssl_cafile=cafile))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    (trusted,) = context.get_ca_certs()  # the CA file alone, not the system's as well
    assert (("organizationName", "ccc-bridge test CA"),) in trusted["subject"]


def test_without_a_ca_file_tls_still_verifies_against_the_system_cas() -> None:
    context = client_options(settings("SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_passes_mechanism_username_and_password(protocol: str, mechanism: str) -> None:
    options = client_options(settings(protocol, sasl_mechanism=mechanism))
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "bridge"
    assert options["sasl_plain_password"] == PASSWORD


def test_sasl_without_a_mechanism_is_plain() -> None:
    assert client_options(settings("SASL_SSL"))["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_aiokafka_accepts_every_mapping(protocol: str, mechanism: str) -> None:
    kafka = settings(protocol, sasl_mechanism=mechanism)
    await AIOKafkaClient(**client_options(kafka)).close()
    await Producer(kafka).stop()  # the service's own producer, as it builds it


@pytest.mark.parametrize(
    "missing", [{"sasl_username": None}, {"sasl_password": None}], ids=["username", "password"]
)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_its_credentials_is_refused_by_name(
    protocol: str, missing: dict[str, None]
) -> None:
    with pytest.raises(ConfigError) as refused:
        client_options(settings(protocol, **missing))
    assert str(refused.value) == (
        f"kafka.security_protocol {protocol} needs kafka.sasl_username and kafka.sasl_password"
    )
    assert PASSWORD not in str(refused.value)


def test_a_client_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^kafka.ssl_keyfile needs kafka.ssl_certfile$"):
        client_options(settings("SSL", ssl_keyfile="/etc/kafka/client.key"))


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError) as refused:
        client_options(settings("SSL", ssl_cafile=missing))
    assert str(refused.value) == f"kafka.ssl_cafile {missing}: No such file or directory"


def test_a_ca_file_without_a_certificate_is_named(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        client_options(settings("SSL", ssl_cafile=garbage))
    assert str(refused.value).startswith(f"kafka.ssl_cafile {garbage}: ")


def test_a_client_certificate_and_key_that_do_not_match_are_named(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    ca.issue_cert("one@example.com").cert_chain_pems[0].write_to_path(str(cert))
    ca.issue_cert("two@example.com").private_key_pem.write_to_path(str(key))
    with pytest.raises(ConfigError) as refused:
        client_options(settings("SSL", ssl_certfile=cert, ssl_keyfile=key))
    assert str(refused.value) == (
        f"kafka.ssl_certfile / ssl_keyfile ({cert}, {key}): key values mismatch"
    )


def test_an_encrypted_client_key_is_refused_rather_than_prompted_for(
    ca: trustme.CA, tmp_path: Path
) -> None:
    leaf = ca.issue_cert("client@example.com")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    private_key = load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    key.write_bytes(
        private_key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"passphrase")
        )
    )
    with pytest.raises(ConfigError, match=r"^kafka.ssl_keyfile is encrypted: "):
        client_options(settings("SSL", ssl_certfile=cert, ssl_keyfile=key))


def test_the_password_is_not_in_how_settings_are_shown() -> None:
    kafka = settings("SASL_SSL", sasl_mechanism="SCRAM-SHA-512")
    whole = Settings(kafka=kafka)
    for shown in (repr(kafka), str(kafka), kafka.model_dump_json(), repr(whole), str(whole)):
        assert PASSWORD not in shown
    assert "**********" in repr(kafka)


def test_kafka_failure_lines_leave_the_password_out() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    kafka = settings("SASL_PLAINTEXT", bootstrap_servers=nowhere)
    lines = [
        kafka_failure(kafka, KafkaConnectionError(f"Unable to bootstrap from {nowhere}")),
        kafka_failure(kafka, NodeNotReadyError("node 111 not ready")),
    ]
    assert lines == [
        f"cannot reach Kafka at {nowhere} (is the broker running?)",
        f"Kafka at {nowhere}: NodeNotReadyError: node 111 not ready",
    ]
