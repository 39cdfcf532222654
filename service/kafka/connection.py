"""Kafka connection options, built in one place for every producer, consumer and admin client.

Secrets leave their `SecretStr` only here, straight into the client's keyword arguments.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from service.settings import KafkaSettings


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient share."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    if kafka.security_protocol.endswith("SSL"):
        # Without a CA file the system trust store verifies the broker.
        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    return options
