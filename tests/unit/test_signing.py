"""Signature V1 reproduces every vector in ../shared/ccc-api/vectors.json and FACTS.md section 4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import SecretStr

from service.ccc.signing import (
    AccessKey,
    BearerToken,
    authorize,
    form_encode,
    percent_encode,
    sign,
    string_to_sign,
)

VECTORS_FILE = Path(__file__).resolve().parents[3] / "shared" / "ccc-api" / "vectors.json"
VECTORS: dict[str, Any] = {
    name: vector
    for name, vector in json.loads(VECTORS_FILE.read_text(encoding="utf-8")).items()
    if isinstance(vector, dict)
}
SECRET = "testsecret"  # the vectors' AccessKeySecret
# FACTS.md section 4: the same inputs signed without the core SDK's empty SignatureType,
# which is what our client sends.
WITHOUT_SIGNATURE_TYPE = {
    "ccc_ListAgentStates_GET_core": "hmW7Pr8pKhNR0bassnhDjm+wIQE=",
    "ccc_SendPredefinedShortMessage_POST_core": "ycSXOq0fkpDOoKLjJ4rLz2mHukc=",
    "docs_example_DescribeRegions_core_incl_empty_SignatureType": "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
}


def _signed_params(vector: dict[str, Any]) -> tuple[str, dict[str, str], str]:
    """(method, parameters the SDK signed, expected signature) of one vector."""
    url = vector.get("signed_url_path") or vector["url"]
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    expected = query.pop("Signature")
    inputs = vector.get("inputs")
    if inputs is None:
        return "GET", query, expected
    return inputs["method"], query | inputs["body_params"], expected


def test_every_vector_is_covered() -> None:
    assert set(VECTORS) == set(WITHOUT_SIGNATURE_TYPE)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_string_to_sign_and_signature_match_the_sdk(name: str) -> None:
    vector = VECTORS[name]
    method, params, expected = _signed_params(vector)
    assert params["SignatureType"] == ""  # the core SDK signs an empty SignatureType
    text = string_to_sign(method, params)
    assert text == vector["string_to_sign"]
    assert sign(text, SECRET) == expected == vector.get("signature", expected)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_authorize_reproduces_the_vector_without_signature_type(name: str) -> None:
    method, params, _ = _signed_params(VECTORS[name])
    own = {
        k: v
        for k, v in params.items()
        if k
        not in {
            "SignatureType",
            "Timestamp",
            "SignatureNonce",
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
        }
    }
    common = authorize(
        method,
        own,
        AccessKey(params["AccessKeyId"], SecretStr(SECRET)),
        timestamp=params["Timestamp"],
        nonce=params["SignatureNonce"],
    )
    assert common["Signature"] == WITHOUT_SIGNATURE_TYPE[name]


def test_percent_encoding_rules() -> None:
    assert percent_encode("a b*c~d/e+f=") == "a%20b%2Ac~d%2Fe%2Bf%3D"
    assert percent_encode("张") == "%E5%BC%A0"


def test_sts_token_is_a_signed_parameter() -> None:
    params = {"Action": "GetInstance", "Version": "2017-07-05", "Format": "JSON"}
    key = AccessKey("STS.id", SecretStr("s"), SecretStr("tok"))
    common = authorize("POST", params, key, timestamp="2024-01-01T00:00:00Z", nonce="n")
    assert common["SecurityToken"] == "tok"
    unsigned = {k: v for k, v in (params | common).items() if k != "Signature"}
    assert common["Signature"] == sign(string_to_sign("POST", unsigned), "s")
    tampered = unsigned | {"SecurityToken": "other"}
    assert common["Signature"] != sign(string_to_sign("POST", tampered), "s")


def test_bearer_mode_sends_token_and_no_signature() -> None:
    common = authorize(
        "POST",
        {"Action": "GetInstance"},
        BearerToken(SecretStr("bt")),
        timestamp="2024-01-01T00:00:00Z",
        nonce="n",
    )
    assert common == {
        "Timestamp": "2024-01-01T00:00:00Z",
        "SignatureNonce": "n",
        "BearerToken": "bt",
        "SignatureType": "BEARERTOKEN",
    }


def test_form_body_uses_the_signature_encoding() -> None:
    body = form_encode({"TemplateParam": '{"n":"张 a*b~"}', "Action": "X"})
    assert body == b"TemplateParam=%7B%22n%22%3A%22%E5%BC%A0%20a%2Ab~%22%7D&Action=X"
