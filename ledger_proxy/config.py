"""The settings registry: every setting's name, default, parser and help text, in one place;
and `load()`, the one way settings are read (by create_app and by the ledger-only commands)."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "LEDGER_PROXY"


class ConfigError(Exception):
    """A setting is missing or malformed; raised at start-up, never at the first request."""


def _url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be a URL string such as https://school.instructure.com")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL such as https://school.instructure.com")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    if "api/v1" in parts.path:
        raise ValueError("must be the Canvas root URL, without /api/v1")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise ValueError(f"has an invalid port ({exc})") from None
    return value.strip().rstrip("/")


def _optional_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be a file path")
    return value


def _jwks_source(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be an http(s) URL or a file path")
    value = value.strip()
    if "://" in value and not value.startswith(("http://", "https://", "file://")):
        raise ValueError("must be an http(s) URL or a file path")
    if value.startswith(("http://", "https://")) and not urlsplit(value).hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _int_list(value: Any) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        raise ValueError("must be a comma-separated list of Canvas user ids")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        items: list[Any] = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("must be a comma-separated list of Canvas user ids")
    ids = []
    for item in items:
        if isinstance(item, bool) or not re.fullmatch(r"\d{1,19}", str(item)):
            raise ValueError(f"{item!r} is not a numeric Canvas user id")
        ids.append(int(item))
    return ids


def _positive_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a positive number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a positive number of seconds") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return number


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


def _short_cache_seconds(value: Any) -> int:
    seconds = _non_negative_int(value)
    if seconds > 60:
        raise ValueError("must be at most 60 seconds")
    return seconds


def _byte_size(value: Any) -> int:
    size = _non_negative_int(value)
    if size == 0:
        raise ValueError("must be a positive number of bytes")
    return size


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise ValueError("must be true or false")


def _optional_secret(value: Any) -> str | None:
    # Environment values are parsed as JSON first, so a numeric-looking secret arrives as int.
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("must be a string")
    return str(value)


def _integrations_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("enforce", "record"):
        raise ValueError("must be 'enforce' or 'record'")
    return text


def _log_level(value: Any) -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}_{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "CANVAS_URL",
        None,
        _url,
        "Canvas base URL that requests are forwarded to, e.g. https://school.instructure.com. "
        "Required by `gunicorn wsgi:app`; `ledger-proxy serve` starts the bundled simulator "
        "when it is unset.",
    ),
    Setting(
        "INSTANCE_PATH",
        None,
        _optional_path,
        "The instance folder: config.py, and by default the ledger and the generated keys. "
        "Default: instance/ beside the package (the checkout's instance/). Environment only.",
    ),
    Setting(
        "DATABASE",
        None,
        _optional_path,
        "Path of the SQLite ledger file. Default: ledger.sqlite3 in the instance folder.",
    ),
    Setting(
        "ADMIN_USER_IDS",
        [],
        _int_list,
        "Comma-separated Canvas user ids allowed to export the ledger and read its history.",
    ),
    Setting(
        "CONNECT_TIMEOUT",
        5.0,
        _positive_number,
        "Seconds to wait for a TCP connection to Canvas before answering 502.",
    ),
    Setting(
        "READ_TIMEOUT",
        60.0,
        _positive_number,
        "Seconds to wait for Canvas to answer (between bytes) before answering 504.",
    ),
    Setting(
        "MAX_BODY_BYTES",
        512 * 1024 * 1024,
        _byte_size,
        "Largest request body forwarded (bytes); larger bodies get 413. Bodies the ledger "
        "does not read (SIS uploads, files) stream through without being held in memory.",
    ),
    Setting(
        "MAX_PARSED_BODY_BYTES",
        1024 * 1024,
        _byte_size,
        "Largest body of an enrollment-changing request, which the proxy reads to record "
        "its intent (bytes); larger ones get 413.",
    ),
    Setting(
        "RECEIVE_TIMEOUT",
        20.0,
        _positive_number,
        "Under gunicorn: seconds a client has to send a request's line, headers and body, "
        "plus one second per LEDGER_PROXY_RECEIVE_MIN_RATE bytes it sent; a client slower "
        "than that gets 408 and its connection is closed, however steadily it trickles.",
    ),
    Setting(
        "RECEIVE_MIN_RATE",
        1000,
        _byte_size,
        "Under gunicorn: bytes per second that extend a request's LEDGER_PROXY_RECEIVE_TIMEOUT "
        "(the lowest average speed a long upload may have).",
    ),
    Setting(
        "CLOCK_SKEW_SECONDS",
        2,
        _non_negative_int,
        "Allowance when comparing Canvas's whole-second created_at with the request's start, "
        "taken on Canvas's clock from its Date header: a row created earlier than that is "
        "recorded as adopted, not created. Without a Date header the proxy's clock is used: "
        "raise it to cover the difference between the two clocks.",
    ),
    Setting(
        "IDENTITY_CACHE_SECONDS",
        3600,
        _non_negative_int,
        "How long the Canvas user behind a token (from /api/v1/users/self) is cached, keyed "
        "by a keyed hash of the token.",
    ),
    Setting(
        "ADMIN_CONFIRM_SECONDS",
        5,
        _short_cache_seconds,
        "How long (0 to 60 seconds) a token's Canvas user, confirmed with Canvas, is trusted "
        "for the admin-only endpoints (export, history) before Canvas is asked again; never "
        "from the persisted identity cache, so a token revoked in Canvas loses admin access "
        "within this time.",
    ),
    Setting(
        "TOKEN_HASH_KEY",
        None,
        _optional_secret,
        "Secret key for the keyed hash (HMAC-SHA256) under which tokens are cached. Default: "
        "a random key generated once into token_hash.key in the instance folder.",
    ),
    Setting(
        "SIS_READER_TOKEN",
        None,
        _optional_secret,
        "Optional Canvas token of an account admin with the SIS permission, used only to read "
        "sis_import_id and SIS ids for the rows a lookup's caller can already see, when Canvas "
        "hides them from the caller (teachers). Unset: such rows not seen by the proxy are "
        "'unknown' rather than guessed.",
    ),
    Setting(
        "RECONCILE_TOKEN",
        None,
        _optional_secret,
        "Canvas token (an account admin's, able to list enrollments) with which requests of "
        "unknown outcome are reconciled automatically. Unset: only `ledger-proxy reconcile "
        "--token` reconciles.",
    ),
    Setting(
        "RECONCILE_INTERVAL_SECONDS",
        300,
        _non_negative_int,
        "How often each worker tries to reconcile (one at a time across workers, through a "
        "lease in the ledger); also once at start-up. 0 turns automatic reconciliation off.",
    ),
    Setting(
        "RECONCILE_GRACE_SECONDS",
        180,
        _non_negative_int,
        "Requests younger than this are left alone by reconciliation: Canvas may still be "
        "working on them.",
    ),
    Setting(
        "LIVE_EVENTS_JWKS",
        None,
        _jwks_source,
        "Where the public keys that sign Canvas Live Events come from: Instructure's published "
        "JWKS URL, or a file holding a copy. Set, POST /ledger/v1/live-events receives a Canvas "
        "Data Services HTTPS subscription (docs/live-events.md); unset, it answers 404 and "
        "`ledger-proxy events ingest` still reads unsigned events.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        0,
        _non_negative_int,
        "Number of reverse proxies (e.g. nginx) in front of ledger-proxy whose "
        "X-Forwarded-Proto/Host/Port/Prefix headers are trusted when rewriting Link headers.",
    ),
    Setting(
        "LOG_LEVEL",
        "INFO",
        _log_level,
        "Log level of the proxy's own logger: DEBUG, INFO, WARNING or ERROR.",
    ),
    Setting(
        "SECRET_KEY",
        None,
        _optional_secret,
        "Key that signs the dashboard's session cookie and, through a derived key, encrypts "
        "the Canvas token inside it. Default: a random key generated once into secret.key in "
        "the instance folder. Every worker must share it; changing it signs everyone out.",
    ),
    Setting(
        "SESSION_COOKIE_SECURE",
        True,
        _flag,
        "Send the dashboard's session cookie over HTTPS only. Set it false only for plain-http "
        "local use (the demo, tests).",
    ),
    Setting(
        "OAUTH_CLIENT_ID",
        None,
        _optional_secret,
        "Client id of a Canvas developer key (API key): the dashboard then signs admins in with "
        "Canvas OAuth2. Its redirect URI must allow <proxy base URL>/ledger/oauth/callback. "
        "Unset: the dashboard asks for a pasted Canvas token instead.",
    ),
    Setting(
        "OAUTH_CLIENT_SECRET",
        None,
        _optional_secret,
        "Client secret of that developer key (required with LEDGER_PROXY_OAUTH_CLIENT_ID). "
        "Never logged.",
    ),
    Setting(
        "INTEGRATIONS",
        None,
        _optional_path,
        "The integration registry: a JSON file binding each integration label to the Canvas "
        "user ids allowed to use it, {\"roster-sync\": {\"user_ids\": [17]}} (relative paths "
        "are in the instance folder). Default: integrations.json in the instance folder when it "
        "exists. Without a registry every label is self-declared, and answers say so.",
    ),
    Setting(
        "INTEGRATIONS_MODE",
        "enforce",
        _integrations_mode,
        "With a registry: 'enforce' refuses (403) an enrollment-changing request under a label "
        "by a user not registered for it; 'record' forwards it and records it with "
        "label_verified false.",
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def defaults() -> dict[str, Any]:
    return {setting.name: setting.default for setting in SETTINGS}


def unknown_env_settings(environ: Mapping[str, str]) -> list[str]:
    """Names of LEDGER_PROXY_* variables that are not settings (usually typos)."""
    prefix = f"{ENV_PREFIX}_"
    return sorted(
        name
        for name in environ
        if name.startswith(prefix) and name[len(prefix) :] not in SETTINGS_BY_NAME
    )


def validate(config: dict[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Parse every registered setting in `config` in place; ConfigError on the first bad one."""
    unknown = unknown_env_settings(environ)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]}; known settings: "
            + ", ".join(setting.env_name for setting in SETTINGS)
        )
    for setting in SETTINGS:
        raw = config.get(setting.name, setting.default)
        try:
            config[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = raw if not isinstance(raw, str) else json.dumps(raw)
            raise ConfigError(f"{setting.env_name}={shown} {exc}") from None


def load(
    test_config: Mapping[str, Any] | None = None,
    instance_path: str | None = None,
    *,
    require_canvas: bool = True,
) -> tuple[dict[str, Any], str]:
    """(settings, instance folder): the registry's defaults, then `instance/config.py`, then
    LEDGER_PROXY_* environment variables (values parsed as JSON where they are JSON, as
    Flask's from_prefixed_env does), then `test_config`; parsed and checked. Commands that
    only read the ledger (export, verify, sis-roster) pass `require_canvas=False`."""
    instance_path = instance_folder(instance_path)
    settings = defaults()
    settings.update(instance_settings(os.path.join(instance_path, "config.py")))
    prefix = f"{ENV_PREFIX}_"
    for name in sorted(os.environ):
        if name.startswith(prefix):
            value: Any = os.environ[name]
            try:
                value = json.loads(value)
            except ValueError:
                pass
            settings[name[len(prefix) :]] = value
    settings.update(test_config or {})
    validate(settings)
    if not settings["CANVAS_URL"] and not require_canvas:
        settings["CANVAS_URL"] = "http://canvas.invalid"  # never reached: no Canvas calls
    if not settings["CANVAS_URL"]:
        raise ConfigError(
            "LEDGER_PROXY_CANVAS_URL is not set: give the Canvas base URL, e.g. "
            "https://school.instructure.com (or run `ledger-proxy serve`, which starts the "
            "bundled simulator when it is unset)"
        )
    if not settings["DATABASE"]:
        settings["DATABASE"] = os.path.join(instance_path, "ledger.sqlite3")
    return settings, instance_path


def instance_folder(instance_path: str | None = None) -> str:
    """The instance folder: given, else LEDGER_PROXY_INSTANCE_PATH, else Flask's default for
    this package (`instance/` beside it in a checkout, `<prefix>/var/ledger_proxy-instance`
    when installed)."""
    from flask.sansio.scaffold import find_package

    instance_path = instance_path or os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH") or None
    if instance_path:
        return os.path.abspath(instance_path)
    prefix, package_path = find_package(__name__.partition(".")[0])
    if prefix is None:
        return os.path.join(package_path, "instance")
    return os.path.join(prefix, "var", "ledger_proxy-instance")


def instance_settings(path: str) -> dict[str, Any]:
    """The upper-case names of `instance/config.py`, if there is one (as Flask's from_pyfile)."""
    try:
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
            return {}
        exc.strerror = f"Unable to load configuration file ({exc.strerror})"
        raise
    namespace: dict[str, Any] = {"__file__": path}
    exec(code, namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


def open_ledger(settings: Mapping[str, Any]) -> None:
    """Create or migrate the ledger file; ConfigError naming the file when it cannot be."""
    from .core import ledger

    try:
        ledger.initialise(settings["DATABASE"])
    except Exception as exc:  # sqlite3 errors name the file problem; say which file
        raise ConfigError(
            f"LEDGER_PROXY_DATABASE={settings['DATABASE']}: cannot open the ledger ({exc})"
        ) from None


def integration_registry(config: Mapping[str, Any], instance_path: str) -> Any:
    """The integration registry (core.integrations.Registry), or None when there is none."""
    from .core.integrations import RegistryError, load_registry

    configured = config.get("INTEGRATIONS")
    path = Path(instance_path) / (configured or "integrations.json")
    if not configured and not path.exists():
        return None
    try:
        return load_registry(path, config.get("INTEGRATIONS_MODE") or "enforce")
    except RegistryError as exc:
        raise ConfigError(f"LEDGER_PROXY_INTEGRATIONS: {exc}") from None


def token_hash_key(config: Mapping[str, Any], instance_path: str) -> bytes:
    """The configured key, or one generated once into the instance folder (mode 0600)."""
    return instance_secret(config, "TOKEN_HASH_KEY", instance_path, "token_hash.key")


def secret_key(config: Mapping[str, Any], instance_path: str) -> bytes:
    """Flask's session-signing key: configured, or generated once like the token hash key."""
    return instance_secret(config, "SECRET_KEY", instance_path, "secret.key")


def instance_secret(
    config: Mapping[str, Any], setting: str, instance_path: str, filename: str
) -> bytes:
    """The setting's value, or a random key generated once into `filename` (mode 0600)."""
    if config.get(setting):
        return str(config[setting]).encode()
    path = Path(instance_path) / filename
    if not path.exists():
        # Write a temporary file, then link it into place: several workers starting at once
        # all end up reading the one key that won, never a half-written file.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{filename}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty; delete it to have a new key generated")
    return key.encode()
