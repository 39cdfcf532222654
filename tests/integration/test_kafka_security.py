"""Kafka security settings reach a broker: the service's KafkaSettings, through client_options,
to Tansu over TLS (with and without client certificates), and a refused connection is one
startup line that names the cause. Certificates are made per session by trustme.

Tansu 0.6.0 in memory cannot check a SASL password: with --authentication it offers only
SCRAM, whose users must be created over an authenticated connection, and a memory-backed broker
starts with none; without it, it refuses every mechanism. So Tansu shows the mechanism reaching
its handshake, and SaslBroker below, a hand-written stand-in for a broker's SASL door, checks
the username and password as Kafka does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import ssl
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import trustme
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

from service.broker import BrokerError, BrokerTls, EmbeddedBroker
from service.console import kafka_failure
from service.kafka.admin import describe_topics, ensure_topics
from service.kafka.connection import client_options
from service.kafka.producer import OutRecord, Producer
from service.kafka.settings import KafkaSettings, TopicSettings
from service.kafka.topics import topic_plan
from tests.integration.kafka_io import read_values, run_cli

PASSWORD = "pw-4f2c9e7a1b"  # distinctive, so any leak of it is found


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path
    other_ca: Path  # a CA that signed nothing here
    server: Path  # the broker's key and chain, for 127.0.0.1
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("ccc-bridge@example.com")
    paths = Pki(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server=folder / "server.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    other.cert_pem.write_to_path(str(paths.other_ca))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths.server))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    return paths


@pytest.fixture
async def tls_broker(pki: Pki) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(tls=BrokerTls(pki.server)) as broker:
        yield broker


@pytest.fixture
async def mtls_broker(pki: Pki) -> AsyncIterator[EmbeddedBroker]:
    """Clients must present a certificate the CA signed."""
    async with EmbeddedBroker(tls=BrokerTls(pki.server, client_cafile=pki.ca)) as broker:
        yield broker


def ssl_settings(broker: EmbeddedBroker, **security: object) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {"bootstrap_servers": broker.bootstrap_servers, "security_protocol": "SSL", **security}
    )


async def round_trip(kafka: KafkaSettings) -> None:
    """Topics by the admin client, a record by the service's Producer, read back by a
    consumer: each built from `kafka` by client_options."""
    topics = TopicSettings(prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=2)
    created = await ensure_topics(kafka, topics)
    assert sorted(created) == sorted(spec.name for spec in topic_plan(topics))
    calls = topics.name("calls")
    assert (await describe_topics(kafka, [calls]))[calls].partitions == 2
    producer = Producer(kafka)
    await producer.start()
    try:
        await producer.send_all([OutRecord(calls, b"call-1", b"over TLS")])
    finally:
        await producer.stop()
    assert await read_values(kafka, calls, 1) == [b"over TLS"]


async def start_failure(kafka: KafkaSettings) -> str:
    """The line the service's start prints when its Producer cannot connect."""
    producer = Producer(kafka)
    try:
        with pytest.raises(KafkaConnectionError) as failed:
            await producer.start()
    finally:
        await producer.stop()
    # Its probe blocks, and the TLS broker under test relays in this event loop.
    return await asyncio.to_thread(kafka_failure, kafka, failed.value)


# -- TLS ------------------------------------------------------------------------------------


async def test_admin_producer_and_consumer_round_trip_over_tls(
    tls_broker: EmbeddedBroker, pki: Pki
) -> None:
    await round_trip(ssl_settings(tls_broker, ssl_cafile=pki.ca))


async def test_restart_serves_tls_again_on_the_same_port(pki: Pki) -> None:
    async with EmbeddedBroker(tls=BrokerTls(pki.server)) as broker:
        port = broker.port
        await broker.restart()
        assert broker.port == port
        await round_trip(ssl_settings(broker, ssl_cafile=pki.ca))


async def test_a_broker_whose_certificate_cannot_load_says_so(pki: Pki) -> None:
    with pytest.raises(BrokerError, match=r"^cannot load the broker's TLS files: "):
        await EmbeddedBroker(tls=BrokerTls(pki.server.with_name("missing.pem"))).start()


@pytest.mark.parametrize("trusting", ["system", "other"])
async def test_a_broker_certificate_not_trusted_fails_the_start_naming_it(
    tls_broker: EmbeddedBroker, pki: Pki, trusting: str
) -> None:
    cafile = None if trusting == "system" else pki.other_ca
    kafka = ssl_settings(tls_broker, ssl_cafile=cafile)
    trusted = cafile or "only the system's CAs (kafka.ssl_cafile is unset)"
    assert await start_failure(kafka) == (
        f"cannot connect to Kafka at {tls_broker.bootstrap_servers}: TLS: the broker's "
        f"certificate did not verify (unable to get local issuer certificate); trusted: {trusted}"
    )


async def test_topics_command_without_the_ca_says_why_in_one_line(
    tls_broker: EmbeddedBroker,
) -> None:
    env = {
        "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": tls_broker.bootstrap_servers,
        "CCC_BRIDGE_KAFKA__SECURITY_PROTOCOL": "SSL",
    }
    code, out, err = await run_cli("topics", "--create", env=env)
    assert code == 2
    assert out == ""
    assert err == (
        f"ccc-bridge topics: cannot connect to Kafka at {tls_broker.bootstrap_servers}: TLS: "
        "the broker's certificate did not verify (unable to get local issuer certificate); "
        "trusted: only the system's CAs (kafka.ssl_cafile is unset)\n"
    )


async def test_a_plaintext_client_of_a_tls_broker_is_told_to_look_at_tls(
    tls_broker: EmbeddedBroker,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=tls_broker.bootstrap_servers)
    assert await start_failure(kafka) == (
        f"cannot connect to Kafka at {tls_broker.bootstrap_servers}: it closed the connection "
        "without answering (a TLS listener? kafka.security_protocol is PLAINTEXT)"
    )


async def test_a_tls_client_of_a_plaintext_broker_is_told_the_handshake_failed(
    broker: EmbeddedBroker, pki: Pki
) -> None:
    # Tansu takes the TLS hello for the start of a request and waits for the rest.
    kafka = ssl_settings(broker, ssl_cafile=pki.ca, request_timeout_ms=1000)
    assert await start_failure(kafka) == (
        f"cannot connect to Kafka at {broker.bootstrap_servers}: "
        "no TLS handshake within 1s (not a TLS listener?)"
    )


async def test_the_client_certificate_is_presented_where_the_broker_requires_one(
    mtls_broker: EmbeddedBroker, pki: Pki
) -> None:
    kafka = ssl_settings(
        mtls_broker,
        ssl_cafile=pki.ca,
        ssl_certfile=pki.client_cert,
        ssl_keyfile=pki.client_key,
    )
    await round_trip(kafka)


async def test_without_a_client_certificate_the_start_fails_naming_it(
    mtls_broker: EmbeddedBroker, pki: Pki
) -> None:
    # A Java broker sends TLS 1.3's "certificate required" alert, named as such ("TLS handshake
    # failed: tlsv13 alert certificate required"); asyncio's TLS server just hangs up.
    assert await start_failure(ssl_settings(mtls_broker, ssl_cafile=pki.ca)) == (
        f"cannot connect to Kafka at {mtls_broker.bootstrap_servers}: it closed the connection "
        "without answering (wants a client certificate? kafka.ssl_certfile is unset)"
    )


# -- SASL ----------------------------------------------------------------------------------

USER = "ccc-bridge"
SASL_AUTHENTICATION_FAILED = 58  # Kafka's error code
UNSUPPORTED_SASL_MECHANISM = 33


class ScramServer:
    """The server side of one SCRAM exchange (RFC 5802), the client's proof checked."""

    def __init__(self, mechanism: str, username: str, password: str) -> None:
        self._hash = "sha512" if mechanism == "SCRAM-SHA-512" else "sha256"
        self._username = username
        salt = secrets.token_bytes(16)
        self._salted = hashlib.pbkdf2_hmac(self._hash, password.encode(), salt, 4096)
        self._salt = base64.b64encode(salt).decode()
        self._messages: list[str] = []

    def first(self, client_first: str) -> str:
        bare = client_first.removeprefix("n,,")
        nonce = _attributes(bare)["r"] + secrets.token_hex(8)
        server_first = f"r={nonce},s={self._salt},i=4096"
        self._messages = [bare, server_first]
        return server_first

    def final(self, client_final: str) -> str | None:
        """The server's signature if the proof holds, else None."""
        without_proof, proof = client_final.rsplit(",p=", 1)
        auth_message = ",".join([*self._messages, without_proof]).encode()
        client_key = self._hmac(self._salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        user = _attributes(self._messages[0])["n"]
        if user != self._username or hashlib.new(self._hash, recovered).digest() != stored_key:
            return None
        server_signature = self._hmac(self._hmac(self._salted, b"Server Key"), auth_message)
        return "v=" + base64.b64encode(server_signature).decode()

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._hash).digest()


class SaslBroker:
    """Answers ApiVersions, the SASL handshake and SASL authentication (v0) as Kafka does, for
    one user, then an empty Metadata: all a client's bootstrap asks. `logins` are the users
    it let in."""

    def __init__(self, mechanism: str, password: str, *, tls: ssl.SSLContext | None) -> None:
        self._mechanism = mechanism
        self._password = password
        self._tls = tls
        self._server: asyncio.Server | None = None
        self.bootstrap_servers = ""
        self.logins: list[str] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        port: int = self._server.sockets[0].getsockname()[1]
        self.bootstrap_servers = f"127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scram = ScramServer(self._mechanism, USER, self._password)
        try:
            while True:
                size = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", size)[0])
                api_key, _, correlation_id, client_id_size = struct.unpack_from(">hhih", frame)
                answer = self._answer(api_key, frame[10 + client_id_size :], scram)
                writer.write(struct.pack(">ii", 4 + len(answer), correlation_id) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client hung up
        finally:
            writer.close()

    def _answer(self, api_key: int, body: bytes, scram: ScramServer) -> bytes:
        if api_key == 18:  # ApiVersions v0: the APIs answered here, and their versions
            apis = [(3, 0, 0), (17, 0, 1), (18, 0, 0), (36, 0, 0)]
            return struct.pack(">hi", 0, len(apis)) + b"".join(
                struct.pack(">hhh", *api) for api in apis
            )
        if api_key == 17:  # SaslHandshake v1
            error = 0 if _string(body) == self._mechanism else UNSUPPORTED_SASL_MECHANISM
            return struct.pack(">hi", error, 1) + _encoded(self._mechanism)
        if api_key == 36:  # SaslAuthenticate v0
            return self._authenticate(body[4:], scram)
        assert api_key == 3, api_key  # Metadata v0: no brokers, no topics
        return struct.pack(">ii", 0, 0)

    def _authenticate(self, token: bytes, scram: ScramServer) -> bytes:
        if self._mechanism == "PLAIN":
            _, user, password = token.decode().split("\0")
            accepted = user == USER and password == self._password
            return self._login(accepted, b"")
        if token.startswith(b"n,,"):
            return _authenticated(0, None, scram.first(token.decode()).encode())
        final = scram.final(token.decode())
        return self._login(final is not None, (final or "").encode())

    def _login(self, accepted: bool, token: bytes) -> bytes:
        if not accepted:
            message = f"Authentication failed: invalid credentials with {self._mechanism}"
            return _authenticated(SASL_AUTHENTICATION_FAILED, message, b"")
        self.logins.append(USER)
        return _authenticated(0, None, token)


def _attributes(message: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in message.split(","))


def _string(body: bytes) -> str:
    (size,) = struct.unpack_from(">h", body)
    return body[2 : 2 + size].decode()


def _encoded(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _authenticated(error: int, message: str | None, token: bytes) -> bytes:
    encoded = struct.pack(">h", -1) if message is None else _encoded(message)
    return struct.pack(">h", error) + encoded + struct.pack(">i", len(token)) + token


def server_tls(pki: Pki, protocol: str) -> ssl.SSLContext | None:
    if protocol != "SASL_SSL":
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server)
    return context


def sasl_settings(door: SaslBroker, protocol: str, mechanism: str, pki: Pki) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "bootstrap_servers": door.bootstrap_servers,
            "security_protocol": protocol,
            "sasl_mechanism": mechanism,
            "sasl_username": USER,
            "sasl_password": PASSWORD,
            "ssl_cafile": pki.ca,
        }
    )


MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS = ["SASL_PLAINTEXT", "SASL_SSL"]


@pytest.fixture
def tansu(protocol: str, broker: EmbeddedBroker, tls_broker: EmbeddedBroker) -> EmbeddedBroker:
    """Tansu, over TLS for SASL_SSL."""
    return tls_broker if protocol == "SASL_SSL" else broker


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_configured_user_and_password_log_in(
    pki: Pki, mechanism: str, protocol: str
) -> None:
    async with SaslBroker(mechanism, PASSWORD, tls=server_tls(pki, protocol)) as door:
        client = AIOKafkaClient(**client_options(sasl_settings(door, protocol, mechanism, pki)))
        try:
            await client.bootstrap()
        finally:
            await client.close()
    assert door.logins == [USER]


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_wrong_password_fails_the_start_in_one_line_without_it(
    pki: Pki, mechanism: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the service's default level
    other = "other-" + PASSWORD
    async with SaslBroker(mechanism, other, tls=server_tls(pki, protocol)) as door:
        line = await start_failure(sasl_settings(door, protocol, mechanism, pki))
    assert line == (
        f"cannot connect to Kafka at {door.bootstrap_servers}: it refused the SASL {mechanism} "
        f"login of user '{USER}' (check kafka.sasl_username and kafka.sasl_password)"
    )
    assert door.logins == []
    assert PASSWORD not in caplog.text


async def test_the_topics_command_with_a_wrong_password_says_so_without_it(pki: Pki) -> None:
    async with SaslBroker("SCRAM-SHA-512", "other-" + PASSWORD, tls=None) as door:
        env = {
            "CCC_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": door.bootstrap_servers,
            "CCC_BRIDGE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CCC_BRIDGE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "CCC_BRIDGE_KAFKA__SASL_USERNAME": USER,
            "CCC_BRIDGE_KAFKA__SASL_PASSWORD": PASSWORD,
        }
        code, out, err = await run_cli("topics", "--create", env=env)
    assert code == 2
    assert out == ""
    assert err == (
        f"ccc-bridge topics: cannot connect to Kafka at {door.bootstrap_servers}: it refused "
        f"the SASL SCRAM-SHA-512 login of user '{USER}' "
        "(check kafka.sasl_username and kafka.sasl_password)\n"
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_mechanism_reaches_tansu_which_refuses_it(
    tansu: EmbeddedBroker,
    pki: Pki,
    mechanism: str,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tansu without --authentication refuses every mechanism in the SASL handshake: the
    mechanism got there, over TLS too, and the failed start says so."""
    caplog.set_level(logging.DEBUG)  # no password is sent before the handshake succeeds
    kafka = KafkaSettings.model_validate(
        {
            "bootstrap_servers": tansu.bootstrap_servers,
            "security_protocol": protocol,
            "sasl_mechanism": mechanism,
            "sasl_username": USER,
            "sasl_password": PASSWORD,
            "ssl_cafile": pki.ca,
        }
    )
    assert await start_failure(kafka) == (
        f"cannot connect to Kafka at {tansu.bootstrap_servers}: "
        f"it does not accept SASL mechanism {mechanism}"
    )
    # aiokafka's own account of its handshake request names the mechanism it sent.
    assert f"SaslHandShakeRequest_v1(mechanism='{mechanism}')" in caplog.text
    assert PASSWORD not in caplog.text
