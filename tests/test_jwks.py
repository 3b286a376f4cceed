"""Verifying Live Events JWTs against a JWKS (issue 13): every way a token must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.wrappers import Request, Response

from ledger_proxy.devserver import BackgroundServer
from ledger_proxy.upstream.jwks import (
    InvalidEventSignature,
    JwksUnavailable,
    LiveEventsVerifier,
    MalformedEventToken,
    declared_algorithm,
    read_event_body,
)

EVENT = {"metadata": {"event_name": "enrollment_created"}, "body": {"enrollment_id": "1"}}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(private_key, ec.EllipticCurvePrivateKey) else jwt.algorithms.RSAAlgorithm
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", **extra}


def sign(private_key: Any, kid: str, payload: dict[str, Any] | None = None, algorithm: str = "RS256", **claims: Any) -> str:
    return jwt.encode({**(payload or EVENT), **claims}, private_key, algorithm=algorithm, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: Any, signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(signature)}"


def hs256_with_public_key(kid: str) -> str:
    """The classic confusion attack: HMAC keyed with the public key's PEM bytes."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    unsigned = handmade(header, EVENT).rsplit(".", 1)[0]
    return f"{unsigned}.{b64(hmac.new(pem, unsigned.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def jwks_file(tmp_path):
    path = tmp_path / "jwks.json"

    def write(*keys: dict[str, Any]) -> str:
        """The path of a JWKS file holding `keys` (by default RSA "k1" and EC "e1")."""
        keys = keys or (public_jwk(RSA_KEY, "k1"), public_jwk(EC_KEY, "e1"))
        path.write_text(json.dumps({"keys": list(keys)}))
        return str(path)

    return write


class JwksServer:
    """A real HTTP server publishing a JWKS that a test can rotate; counts the fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.fetches += 1
        request = Request(environ)
        assert request.path == "/jwks.json"
        return Response(json.dumps({"keys": self.keys}), content_type="application/json")(environ, start_response)


@pytest.fixture
def jwks_server():
    app = JwksServer(public_jwk(RSA_KEY, "k1"))
    with BackgroundServer(app) as server:
        yield app, f"{server.url}/jwks.json"


# -- good tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kid", "algorithm"),
    [pytest.param(RSA_KEY, "k1", "RS256", id="rs256"), pytest.param(EC_KEY, "e1", "ES256", id="es256")],
)
def test_a_token_signed_by_a_published_key_verifies(jwks_file, key, kid, algorithm):
    verifier = LiveEventsVerifier(jwks_file())
    now = int(time.time())
    payload = verifier.verify(sign(key, kid, algorithm=algorithm, iat=now, exp=now + 300))
    assert payload["metadata"] == EVENT["metadata"]
    assert verifier.fetches == 1


def test_jwks_from_a_url_served_over_http(jwks_server):
    app, url = jwks_server
    verifier = LiveEventsVerifier(url)
    assert verifier.verify(sign(RSA_KEY, "k1"))["body"] == EVENT["body"]
    assert verifier.verify(sign(RSA_KEY, "k1"))["body"] == EVENT["body"]
    assert app.fetches == 1  # cached


def test_a_declared_alg_is_the_only_one_accepted(jwks_file):
    verifier = LiveEventsVerifier(jwks_file(public_jwk(RSA_KEY, "k1", alg="PS256")))
    assert verifier.verify(sign(RSA_KEY, "k1", algorithm="PS256"))
    with pytest.raises(InvalidEventSignature, match="is for PS256"):
        verifier.verify(sign(RSA_KEY, "k1", algorithm="RS256"))


# -- refused tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        pytest.param(lambda: sign(OTHER_RSA_KEY, "k1"), "bad signature", id="wrong-key"),
        pytest.param(lambda: handmade({"alg": "none", "kid": "k1"}, EVENT), "'none' is not accepted", id="alg-none"),
        pytest.param(lambda: handmade({"alg": "None", "kid": "k1"}, EVENT), "is not accepted", id="alg-None"),
        pytest.param(lambda: hs256_with_public_key("k1"), "'HS256' is not accepted", id="hs256-with-public-key"),
        pytest.param(lambda: sign(EC_KEY, "k1", algorithm="ES256"), "is for RS256", id="ec-alg-on-rsa-key"),
        pytest.param(lambda: sign(RSA_KEY, "k1", exp=int(time.time()) - 120), "not valid now", id="expired"),
        pytest.param(lambda: sign(RSA_KEY, "k1", iat=int(time.time()) + 600), "not valid now", id="iat-in-the-future"),
        pytest.param(lambda: sign(RSA_KEY, "k1", nbf=int(time.time()) + 600), "not valid now", id="nbf-in-the-future"),
        pytest.param(lambda: jwt.encode(EVENT, RSA_KEY, algorithm="RS256"), "names no key", id="no-kid"),
        pytest.param(lambda: sign(RSA_KEY, "nobody"), "unknown key id 'nobody'", id="unknown-kid"),
    ],
)
def test_tokens_not_signed_by_a_trusted_key_are_invalid_signatures(jwks_file, make_token, message):
    verifier = LiveEventsVerifier(jwks_file())
    with pytest.raises(InvalidEventSignature, match=message):
        verifier.verify(make_token())


@pytest.mark.parametrize(("leeway", "ok"), [pytest.param(60, True, id="within"), pytest.param(5, False, id="beyond")])
def test_the_allowance_is_a_parameter(jwks_file, leeway, ok):
    verifier = LiveEventsVerifier(jwks_file(), leeway=leeway)
    token = sign(RSA_KEY, "k1", exp=int(time.time()) - 30, iat=int(time.time()) - 90)
    if ok:
        assert verifier.verify(token)
    else:
        with pytest.raises(InvalidEventSignature):
            verifier.verify(token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not a jwt", id="garbage"),
        pytest.param("a.b.c", id="bad-base64-header"),
        pytest.param("", id="empty"),
    ],
)
def test_garbage_is_a_malformed_token(jwks_file, token):
    with pytest.raises(MalformedEventToken):
        LiveEventsVerifier(jwks_file()).verify(token)


def test_a_signed_payload_that_is_not_json_is_malformed(jwks_file):
    header = b64(json.dumps({"alg": "RS256", "kid": "k1"}).encode())
    unsigned = f"{header}.{b64(b'not json')}"
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(unsigned.encode(), RSA_KEY)
    with pytest.raises(MalformedEventToken):
        LiveEventsVerifier(jwks_file()).verify(f"{unsigned}.{b64(signature)}")


# -- key rotation and refetching -------------------------------------------------------------


def test_an_unknown_kid_refetches_once_and_picks_up_a_rotated_key(jwks_server):
    app, url = jwks_server
    now = [1000.0]
    verifier = LiveEventsVerifier(url, refetch_interval=30, clock=lambda: now[0])
    assert verifier.verify(sign(RSA_KEY, "k1"))
    app.keys = [public_jwk(OTHER_RSA_KEY, "k2")]  # Instructure rotates its key
    assert verifier.verify(sign(OTHER_RSA_KEY, "k2"))
    assert app.fetches == 2
    with pytest.raises(InvalidEventSignature, match="unknown key id"):
        verifier.verify(sign(OTHER_RSA_KEY, "made-up-1"))
    with pytest.raises(InvalidEventSignature, match="unknown key id"):
        verifier.verify(sign(OTHER_RSA_KEY, "made-up-2"))
    assert app.fetches == 2  # rate-limited: made-up kids cannot make us fetch on every request
    now[0] += 31
    with pytest.raises(InvalidEventSignature):
        verifier.verify(sign(OTHER_RSA_KEY, "made-up-3"))
    assert app.fetches == 3  # one refetch per interval at most
    with pytest.raises(InvalidEventSignature, match="unknown key id 'k1'"):
        verifier.verify(sign(RSA_KEY, "k1"))  # the old key is gone
    assert app.fetches == 3


def test_a_stale_jwks_is_refetched_after_max_age(jwks_file):
    now = [0.0]
    verifier = LiveEventsVerifier(jwks_file(), max_age=100, clock=lambda: now[0])
    verifier.verify(sign(RSA_KEY, "k1"))
    now[0] = 150
    verifier.verify(sign(RSA_KEY, "k1"))
    assert verifier.fetches == 2


@pytest.mark.parametrize(
    "source",
    [pytest.param("/nonexistent/jwks.json", id="missing-file"), pytest.param("http://127.0.0.1:9/jwks.json", id="nothing-listening")],
)
def test_an_unreadable_jwks_is_unavailable_not_a_bad_signature(source):
    with pytest.raises(JwksUnavailable, match="cannot read the JWKS"):
        LiveEventsVerifier(source, timeout=2).verify(sign(RSA_KEY, "k1"))


def test_a_document_without_keys_is_unavailable(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"not": "a jwks"}')
    with pytest.raises(JwksUnavailable, match="keys"):
        LiveEventsVerifier(str(path)).verify(sign(RSA_KEY, "k1"))


def test_symmetric_keys_in_a_jwks_are_never_trusted(jwks_file):
    shared = b"a shared secret of at least 32 bytes"
    secret = {"kty": "oct", "kid": "h1", "k": b64(shared), "alg": "HS256"}
    verifier = LiveEventsVerifier(jwks_file(secret, public_jwk(RSA_KEY, "k1")))
    token = jwt.encode(EVENT, shared, algorithm="HS256", headers={"kid": "h1"})
    with pytest.raises(InvalidEventSignature, match="not accepted"):
        verifier.verify(token)


@pytest.mark.parametrize(
    ("jwk", "expected"),
    [
        pytest.param({"kty": "RSA"}, "RS256", id="rsa-default"),
        pytest.param({"kty": "RSA", "alg": "RS512"}, "RS512", id="rsa-declared"),
        pytest.param({"kty": "RSA", "alg": "HS256"}, None, id="rsa-claiming-hmac"),
        pytest.param({"kty": "RSA", "alg": "ES256"}, None, id="rsa-claiming-ec"),
        pytest.param({"kty": "EC", "crv": "P-384"}, "ES384", id="ec-by-curve"),
        pytest.param({"kty": "EC", "crv": "P-256", "alg": "ES384"}, None, id="ec-wrong-curve"),
        pytest.param({"kty": "OKP", "crv": "Ed25519"}, "EdDSA", id="eddsa"),
        pytest.param({"kty": "oct", "alg": "HS256"}, None, id="oct"),
    ],
)
def test_the_algorithm_a_key_declares(jwk, expected):
    assert declared_algorithm(jwk) == expected


# -- bodies: a JWT, or JSON from a pipe ------------------------------------------------------


def test_a_body_is_a_jwt_for_https_and_may_be_json_for_pipe_ingestion(jwks_file):
    verifier = LiveEventsVerifier(jwks_file())
    assert read_event_body(sign(RSA_KEY, "k1").encode() + b"\n", verifier)["body"] == EVENT["body"]
    assert read_event_body(json.dumps(EVENT), None, allow_unsigned=True) == EVENT
    with pytest.raises(InvalidEventSignature, match="unsigned"):
        read_event_body(json.dumps(EVENT), verifier)
    with pytest.raises(MalformedEventToken, match="not valid JSON"):
        read_event_body("{nope", None, allow_unsigned=True)
    with pytest.raises(JwksUnavailable):
        read_event_body(sign(RSA_KEY, "k1"), None, allow_unsigned=True)
