"""Kafka connection options, built in one place for every producer, consumer and admin client,
and a probe that names why a broker turns the client away.

Secrets leave their `SecretStr` only here, straight into the client's keyword arguments.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any, NoReturn

from aiokafka.conn import collect_hosts
from aiokafka.errors import UnsupportedSaslMechanismError, for_code

from service.errors import ConfigError
from service.kafka.settings import KafkaSettings

PROBE_TIMEOUT_S = 3.0
SASL_HANDSHAKE_V1 = (17, 1)  # (api key, version)
API_VERSIONS_V0 = (18, 0)


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient share.
    ConfigError when the security settings cannot work, naming the setting."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if _uses_sasl(kafka):
        if kafka.sasl_username is None or kafka.sasl_password is None:
            raise ConfigError(
                f"kafka.security_protocol {kafka.security_protocol} needs "
                "kafka.sasl_username and kafka.sasl_password"
            )
        options["sasl_mechanism"] = _mechanism(kafka)
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    if _uses_tls(kafka):
        options["ssl_context"] = ssl_context(kafka)
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifies the broker's certificate and name against kafka.ssl_cafile (unset: the system's
    CAs), and presents the client certificate when one is configured."""
    if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
        raise ConfigError("kafka.ssl_keyfile needs kafka.ssl_certfile")
    try:
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    except OSError as error:  # ssl.SSLError is one too
        raise ConfigError(f"kafka.ssl_cafile {kafka.ssl_cafile}: {_reason(error)}") from error
    if kafka.ssl_certfile is not None:
        try:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, _no_passphrase)
        except OSError as error:
            files = ", ".join(str(f) for f in (kafka.ssl_certfile, kafka.ssl_keyfile) if f)
            raise ConfigError(
                f"kafka.ssl_certfile / ssl_keyfile ({files}): {_reason(error)}"
            ) from error
    return context


def _no_passphrase() -> NoReturn:
    # Called only for an encrypted key: without it, OpenSSL would prompt on the terminal.
    raise ConfigError("kafka.ssl_keyfile is encrypted: give the client key without a passphrase")


def connection_problem(kafka: KafkaSettings) -> str | None:
    """Why the first bootstrap server turns this client away, found by connecting once as the
    client does: aiokafka reports a failed TLS or SASL handshake only as "Unable to
    bootstrap". None when it cannot be reached at all, or no cause shows.

    Blocking, each step (connect, TLS handshake, answer) within PROBE_TIMEOUT_S, or the
    clients' request timeout if shorter: it runs once, to explain a failed start.
    """
    host, port, _ = collect_hosts(kafka.bootstrap_servers, randomize=False)[0]
    timeout_s = min(PROBE_TIMEOUT_S, kafka.request_timeout_ms / 1000)
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return None
    try:
        with raw:
            if not _uses_tls(kafka):
                answer = _ask(kafka, raw)
            else:
                with ssl_context(kafka).wrap_socket(
                    raw, server_hostname=host, do_handshake_on_connect=False
                ) as tls:
                    try:
                        tls.do_handshake()
                    except TimeoutError:
                        return f"no TLS handshake within {timeout_s:g}s (not a TLS listener?)"
                    answer = _ask(kafka, tls)
    except TimeoutError:
        return f"no answer within {timeout_s:g}s"
    except OSError as error:  # ssl.SSLError is one too
        return _transport_problem(kafka, error)
    if answer is None:
        return f"it closed the connection without answering{_closed_hint(kafka)}"
    return _sasl_problem(kafka, answer) if _uses_sasl(kafka) else None


def _transport_problem(kafka: KafkaSettings, error: OSError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = kafka.ssl_cafile or "only the system's CAs (kafka.ssl_cafile is unset)"
        return (
            f"TLS: the broker's certificate did not verify ({error.verify_message}); "
            f"trusted: {trusted}"
        )
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {_reason(error)}"
    return f"the connection broke: {_reason(error)}"


def _sasl_problem(kafka: KafkaSettings, answer: bytes) -> str:
    """From the answer to the SASL handshake: the mechanism, else the login."""
    (error_code,) = struct.unpack_from(">h", answer, 4)  # after the correlation id
    mechanism = _mechanism(kafka)
    if error_code == UnsupportedSaslMechanismError.errno:
        return f"it does not accept SASL mechanism {mechanism}"
    if error_code:
        return f"the SASL handshake failed: {for_code(error_code).__name__}"
    return (
        f"it refused the SASL {mechanism} login of user {kafka.sasl_username!r} "
        "(check kafka.sasl_username and kafka.sasl_password)"
    )


def _ask(kafka: KafkaSettings, channel: socket.socket) -> bytes | None:
    """One request as the client's first: the SASL handshake for its mechanism, else
    ApiVersions. The answer's bytes, None if the broker hung up first."""
    with channel.makefile("rwb") as stream:
        if _uses_sasl(kafka):
            mechanism = _mechanism(kafka).encode()
            body = struct.pack(">h", len(mechanism)) + mechanism
            stream.write(_request(*SASL_HANDSHAKE_V1, kafka.client_id, body))
        else:
            stream.write(_request(*API_VERSIONS_V0, kafka.client_id, b""))
        stream.flush()
        # A TLS 1.3 server that wants a client certificate says so here, not in the handshake.
        size = stream.read(4)
        if len(size) < 4:
            return None
        answer: bytes = stream.read(struct.unpack(">i", size)[0])
        return answer


def _closed_hint(kafka: KafkaSettings) -> str:
    if not _uses_tls(kafka):
        return f" (a TLS listener? kafka.security_protocol is {kafka.security_protocol})"
    if kafka.ssl_certfile is None:
        return " (wants a client certificate? kafka.ssl_certfile is unset)"
    return ""


def _request(api_key: int, version: int, client_id: str, body: bytes) -> bytes:
    """A Kafka request frame with a v1 header (correlation id 1)."""
    client = client_id.encode()
    message = struct.pack(">hhih", api_key, version, 1, len(client)) + client + body
    return struct.pack(">i", len(message)) + message


def _uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol.startswith("SASL_")


def _uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol.endswith("SSL")


def _mechanism(kafka: KafkaSettings) -> str:
    return kafka.sasl_mechanism or "PLAIN"


def _reason(error: OSError) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    return error.strerror or str(error)
