"""Verify Canvas Live Events JWTs against a JWKS (a URL or a file), with PyJWT.

Canvas Data Services signs each HTTPS delivery as a JWT and publishes the public keys as a
JWKS; the key is chosen by the token's ``kid`` (provenance-sources.md §1.1). What is refused:

- any algorithm that is not asymmetric (``none``, every HMAC: a public key must never be
  usable as an HMAC secret), and any algorithm other than the one the key declares (its
  ``alg``, else the one its ``kty``/``crv`` implies);
- an unknown ``kid`` after one refetch of the JWKS (refetches are rate-limited, so a stream of
  made-up ``kid`` values cannot make us fetch on every request);
- ``exp`` in the past, or ``iat``/``nbf`` in the future, beyond ``leeway`` seconds.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ASYMMETRIC_ALGORITHMS = frozenset((*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA"))
DEFAULT_LEEWAY = 60.0
DEFAULT_REFETCH_INTERVAL = 30.0
DEFAULT_MAX_AGE = 24 * 3600.0


class LiveEventsTokenError(Exception):
    """Base of the errors below; the message is safe to show to the sender."""


class InvalidEventSignature(LiveEventsTokenError):
    """Not signed by a key we trust: bad signature, unknown key, refused algorithm, expired.
    The receiver answers 401."""


class MalformedEventToken(LiveEventsTokenError):
    """Not a JWT (or JSON event) at all, or its payload is not a JSON object (400)."""


class JwksUnavailable(LiveEventsTokenError):
    """The JWKS could not be read, so nothing can be verified now (503: the sender retries)."""


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    algorithm: str
    key: Any  # a `cryptography` public key


def read_event_body(
    body: bytes | str, verifier: LiveEventsVerifier | None, *, allow_unsigned: bool = False,
) -> dict[str, Any]:
    """The event a request or an NDJSON line carries: a compact JWT, verified, or (only when
    ``allow_unsigned``, i.e. pipe ingestion from the institution's own SQS consumer) a JSON
    object as it is. An HTTPS receiver must keep ``allow_unsigned`` False."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.strip()
    if text.startswith("{"):
        if not allow_unsigned:
            raise InvalidEventSignature("unsigned event: expected a signed JWT")
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise MalformedEventToken(f"not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise MalformedEventToken("the event must be a JSON object")
        return document
    if verifier is None:
        raise JwksUnavailable("no JWKS configured to verify signed events")
    return verifier.verify(text)


class LiveEventsVerifier:
    """Verifies Live Events JWTs against the JWKS at ``source`` (http(s) URL or file path).

    Keys are fetched on first use and cached; an unknown ``kid`` triggers at most one refetch
    per ``refetch_interval`` seconds; the whole set is refetched once older than ``max_age``.
    Thread-safe: gunicorn threads share one verifier.
    """

    def __init__(
        self, source: str, *, leeway: float = DEFAULT_LEEWAY,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL, max_age: float = DEFAULT_MAX_AGE,
        timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not source:
            raise ValueError("a JWKS URL or file path is required")
        self.source = source
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, TrustedKey] = {}
        self._fetched_at: float | None = None
        self._last_refetch: float | None = None
        self.fetches = 0

    # -- verification ----------------------------------------------------------------------

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """The verified payload of ``token``; raises one of the `LiveEventsTokenError`s."""
        if isinstance(token, bytes):
            token = token.decode("ascii", errors="replace")
        token = token.strip()
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise InvalidEventSignature(f"algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidEventSignature("the token names no key (kid)")
        trusted = self.key(kid)
        if trusted.algorithm != algorithm:
            raise InvalidEventSignature(
                f"key {kid!r} is for {trusted.algorithm}, the token says {algorithm}"
            )
        try:
            payload = jwt.decode(
                token, trusted.key, algorithms=[trusted.algorithm], leeway=self.leeway,
                options={"verify_aud": False, "verify_iss": False, "require": []},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
            raise InvalidEventSignature(f"token not valid now: {exc}") from None
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.InvalidAlgorithmError) as exc:
            raise InvalidEventSignature(f"bad signature: {exc}") from None
        except jwt.InvalidTokenError as exc:  # DecodeError, bad claim types
            raise MalformedEventToken(f"bad token: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedEventToken("the token's payload must be a JSON object")
        return payload

    def key(self, kid: str) -> TrustedKey:
        """The trusted key named ``kid``, fetching the JWKS when needed (see the class doc)."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.max_age:
                self._load(now)
            elif kid not in self._keys and (
                self._last_refetch is None or now - self._last_refetch >= self.refetch_interval
            ):
                self._last_refetch = now
                self._load(now)
            found = self._keys.get(kid)
        if found is None:
            raise InvalidEventSignature(f"unknown key id {kid!r}")
        return found

    # -- the JWKS --------------------------------------------------------------------------

    def _load(self, now: float) -> None:
        document = self._read_source()
        self._keys = trusted_keys(document)
        self._fetched_at = now
        self.fetches += 1

    def _read_source(self) -> Any:
        try:
            if self.source.startswith(("http://", "https://")):
                response = requests.get(self.source, timeout=self.timeout)
                response.raise_for_status()
                return response.json()
            path = self.source.removeprefix("file://")
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, requests.RequestException) as exc:
            raise JwksUnavailable(f"cannot read the JWKS at {self.source}: {exc}") from None


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read alone: PyJWT's get_unverified_header decodes and checks the
    whole token, which `jwt.decode` then does again (a fifth of the receiver's CPU time)."""
    segments = token.split(".")
    if len(segments) != 3:
        raise MalformedEventToken("not a compact JWT: it must have three dot-separated parts")
    try:
        raw = base64.urlsafe_b64decode(segments[0] + "=" * (-len(segments[0]) % 4))
        header = json.loads(raw)
    except ValueError as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise MalformedEventToken(f"not a compact JWT: its header is unreadable ({exc})") from None
    if not isinstance(header, dict):
        raise MalformedEventToken("not a compact JWT: its header is not a JSON object")
    return header


def trusted_keys(document: Any) -> dict[str, TrustedKey]:
    """The usable keys of a JWKS document by ``kid``: asymmetric public keys only; symmetric
    (``oct``), kid-less and unreadable entries are skipped rather than trusted."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("the JWKS is not an object with a `keys` list")
    keys: dict[str, TrustedKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use") not in (None, "sig"):
            continue
        algorithm = declared_algorithm(entry)
        if algorithm is None:
            continue
        try:
            key = jwt.PyJWK(dict(entry), algorithm).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if hasattr(key, "private_bytes"):  # a private key published by mistake: never trust it
            key = key.public_key()
        keys[entry["kid"]] = TrustedKey(entry["kid"], algorithm, key)
    return keys


def declared_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a JWK may verify: its ``alg`` when it names an asymmetric one that
    fits its ``kty``, else the default for its ``kty`` (RS256; ES by curve; EdDSA); None for
    anything else (``oct``, unknown types, a mismatched ``alg``)."""
    kty, alg, crv = jwk.get("kty"), jwk.get("alg"), jwk.get("crv")
    if kty == "RSA":
        allowed: tuple[str, ...] = RSA_ALGORITHMS
        default: str | None = "RS256"
    elif kty == "EC":
        default = EC_ALGORITHMS.get(crv) if isinstance(crv, str) else None
        allowed = (default,) if default else ()
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        allowed, default = ("EdDSA",), "EdDSA"
    else:
        return None
    if alg is None:
        return default
    return alg if alg in allowed else None
