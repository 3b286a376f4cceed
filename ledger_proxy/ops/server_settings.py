"""What the gunicorn master needs to know of the proxy's settings, without building the app:
the same sources as create_app (defaults, instance/config.py, LEDGER_PROXY_* variables)."""

from __future__ import annotations

import os
from typing import Any

from ..config import ENV_PREFIX, SETTINGS_BY_NAME, defaults

# systemd sets it from the unit's RuntimeDirectory= (docs/deploy.md).
SYSTEMD_RUNTIME_DIRECTORY = "RUNTIME_DIRECTORY"


class WorkerTimeoutTooShort(Exception):
    """gunicorn would kill a worker still waiting on Canvas within the proxy's timeouts."""


def _instance() -> tuple[dict[str, Any], str]:
    from flask import Flask

    given = os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH") or None
    probe = Flask(
        "ledger_proxy",
        instance_path=os.path.abspath(given) if given else None,
        instance_relative_config=True,
    )
    probe.config.from_mapping(defaults())
    probe.config.from_pyfile("config.py", silent=True)
    probe.config.from_prefixed_env(ENV_PREFIX)
    return dict(probe.config), probe.instance_path


def setting(name: str) -> Any:
    """The setting's value as the app will see it (its default if malformed: the app itself
    then stops start-up with a message naming it)."""
    config, _ = _instance()
    definition = SETTINGS_BY_NAME[name]
    try:
        return definition.parse(config.get(name, definition.default))
    except ValueError:
        return definition.parse(definition.default)


def canvas_wait() -> float:
    """How long a request may legitimately wait for Canvas: connect plus read timeouts."""
    return float(setting("CONNECT_TIMEOUT")) + float(setting("READ_TIMEOUT"))


def worker_timeout(connect_timeout: float, read_timeout: float) -> int:
    """gunicorn's worker timeout for these Canvas timeouts: a worker is killed after `timeout`
    seconds of silence, and a request may legitimately wait for Canvas up to their sum."""
    return int(float(connect_timeout) + float(read_timeout)) + 30


def check_worker_timeout(timeout: float) -> None:
    """Refuse a gunicorn worker timeout that does not exceed the proxy's own timeouts."""
    wait = canvas_wait()
    if timeout and timeout <= wait:
        raise WorkerTimeoutTooShort(
            f"gunicorn's worker timeout ({timeout:g} s) must exceed "
            f"LEDGER_PROXY_CONNECT_TIMEOUT + LEDGER_PROXY_READ_TIMEOUT ({wait:g} s): gunicorn "
            "would kill a worker still waiting for Canvas, and the client would get an HTML "
            "500 instead of the proxy's 504. Raise --timeout (ledger_proxy/ops/gunicorn_conf.py "
            f"sets {worker_timeout(wait, 0)}) or lower the proxy's timeouts."
        )


def runtime_dir() -> str | None:
    """This instance's private runtime folder (gunicorn's control socket goes there):
    systemd's RuntimeDirectory, else run/ in the instance folder; None if it cannot be made."""
    given = os.environ.get(SYSTEMD_RUNTIME_DIRECTORY, "").split(":")[0]
    if given and os.path.isdir(given):
        return given
    _, instance_path = _instance()
    path = os.path.join(instance_path, "run")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError:
        return None
    return path
