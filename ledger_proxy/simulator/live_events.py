"""Canvas Live Events from the simulator: signed JWTs posted to a subscriber, and NDJSON lines.

What Canvas would emit (shared/canvas/provenance-sources.md §1): `enrollment_created` on every
new row, `enrollment_updated` on every saved change (not on `update_all` paths such as SIS
touching unchanged rows or `last_attended`), `sis_batch_created`/`_updated` for SIS imports.
Request-originated events carry the request's metadata; job-originated ones (the SIS importer)
carry `job_id`/`job_tag` and no user or request. Ids are global (shard * 10^13 + local), as
strings. Delivery runs on one background thread, so it never blocks or breaks a request;
faults (drop, duplicate, delay, reorder) are chosen by event number or by a seeded RNG.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ledger_proxy.simulator.models import OBSERVER, Context, Enrollment, SisImport, iso

if TYPE_CHECKING:
    from ledger_proxy.simulator.state import SimulatorState

SHARD_FACTOR = 10**13
DEFAULT_DEVELOPER_KEY_ID = "170000000000001"  # what every personal access token carries (§1.3)
SIS_JOB_TAG = "SIS::CSV::ImportRefactored#run_parallel_importer"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
FORMATS = ("canvas", "caliper")
TOKEN_LIFETIME = 300
RETRY_DELAYS = (0.05, 0.2, 0.5)


@dataclass
class LiveEventsConfig:
    """`POST /_sim/live_events`: where events go, in which format, and which faults apply."""

    url: str | None = None
    format: str = "canvas"
    ndjson_path: str | None = None
    shard: int = 1
    compact: bool = False  # compact_live_events: drop null keys
    hostname: str = "canvas.simulator.test"
    drop: list[int] = field(default_factory=list)
    duplicate: list[int] = field(default_factory=list)
    delay: dict[int, float] = field(default_factory=dict)
    reorder: list[int] = field(default_factory=list)  # event n is sent after event n + 1
    seed: int | None = None
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    timeout: float = 5.0
    workers: int = 1  # delivery threads; more than one gives up the order faults rely on

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LiveEventsConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown live_events settings: {sorted(unknown)}")
        config = cls(**data)
        if config.format not in FORMATS:
            raise ValueError(f"live_events format must be one of {FORMATS}")
        if config.url is not None and not str(config.url).startswith(("http://", "https://")):
            raise ValueError("live_events url must be http(s)")
        if not 1 <= int(config.workers) <= 16:
            raise ValueError("live_events workers must be 1 to 16")
        config.delay = {int(k): float(v) for k, v in dict(config.delay).items()}
        config.drop, config.duplicate, config.reorder = (
            [int(n) for n in config.drop], [int(n) for n in config.duplicate],
            [int(n) for n in config.reorder],
        )
        return config

    def as_json(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["delay"] = {str(k): v for k, v in self.delay.items()}
        return out


@dataclass
class Outgoing:
    """One event as emitted, and what became of it."""

    seq: int
    document: dict[str, Any]
    status: str = "pending"  # pending, held, delivered, failed, dropped
    deliveries: int = 0
    attempts: int = 0
    error: str | None = None
    token: str | None = None

    def as_json(self) -> dict[str, Any]:
        metadata = self.document["metadata"]
        return {
            "seq": self.seq, "event_name": metadata["event_name"], "status": self.status,
            "deliveries": self.deliveries, "attempts": self.attempts, "error": self.error,
            "request_id": metadata.get("request_id"), "document": self.document,
            "jwt": self.token,  # the last body posted: replay it to test a receiver directly
        }


class SigningKey:
    """The RSA key the simulator signs with, and its JWKS (generated, or given as PEM)."""

    def __init__(self, pem: str | None = None) -> None:
        if pem:
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("the signing key must be an RSA private key")
            self.private_key = loaded
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"sim-{secrets.token_hex(6)}"

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


class LiveEventsEmitter:
    """Builds events in the request (under the state lock) and delivers them on a thread."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._keys: list[SigningKey] = []
        self._threads: list[threading.Thread] = []
        self._busy = 0  # deliveries in flight; a reset must not zero it under the thread
        self._generation = 0
        self.reset()

    # -- configuration ---------------------------------------------------------------------

    def reset(self) -> None:
        """Stop emitting and forget every event; the signing key is kept (it is costly)."""
        with self._lock:
            self.config: LiveEventsConfig | None = None
            self.log: list[Outgoing] = []
            self._queue: list[tuple[float, int, Outgoing]] = []
            self._held: list[Outgoing] = []
            self._order = itertools.count()
            self._seq = itertools.count(1)
            self._generation += 1
            self._rng = random.Random()
            self._lock.notify_all()

    def configure(self, config: LiveEventsConfig | None) -> None:
        """Emit with `config` from now on; None stops, cancelling what is not yet sent."""
        with self._lock:
            if config is None:
                for _, _, item in self._queue:
                    item.status = "cancelled"
                for item in self._held:
                    item.status = "cancelled"
                self._queue, self._held = [], []
            self.config = config
            self._rng = random.Random(config.seed if config else None)
            if config is not None:
                self._signing_key()
                self._start()
            self._lock.notify_all()

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def _signing_key(self) -> SigningKey:
        if not self._keys:
            self._keys.append(SigningKey())
        return self._keys[-1]

    def set_key(self, pem: str | None, keep_old: bool = False) -> SigningKey:
        """A new signing key (generated, or `pem`); the JWKS keeps the old one when asked."""
        with self._lock:
            key = SigningKey(pem)
            self._keys = ([*self._keys[-1:]] if keep_old else []) + [key]
            return key

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            self._signing_key()
            return {"keys": [key.jwk() for key in self._keys]}

    # -- emitting (called with the simulator's state lock held) -------------------------------

    def emit(self, document: dict[str, Any]) -> None:
        with self._lock:
            config = self.config
            if config is None:
                return
            if config.compact:
                document = {part: _compact(values) for part, values in document.items()}
            item = Outgoing(next(self._seq), document)
            self.log.append(item)
            if item.seq in config.drop or self._chance(config.drop_rate):
                item.status = "dropped"
                return
            copies = 2 if item.seq in config.duplicate or self._chance(config.duplicate_rate) else 1
            hold = item.seq in config.reorder or self._chance(config.reorder_rate)
            due = time.monotonic() + config.delay.get(item.seq, 0.0)
            released, self._held = self._held, []
            if hold:  # sent after the next event (or at the next flush)
                item.status = "held"
                self._held = [item] * copies
            else:
                for _ in range(copies):
                    self._push(due, item)
            for held in released:
                held.status = "pending"
                self._push(due, held)
            self._lock.notify_all()

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _push(self, due: float, item: Outgoing) -> None:
        heapq.heappush(self._queue, (due, next(self._order), item))

    # -- delivery ----------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Release held events, then wait until nothing is queued or in flight (True) or
        `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for held in self._held:
                held.status = "pending"
                self._push(time.monotonic(), held)
            self._held = []
            self._lock.notify_all()
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def log_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [item.as_json() for item in self.log]

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for item in self.log:
                counts[item.status] = counts.get(item.status, 0) + 1
            return {
                "enabled": self.config is not None,
                "config": self.config.as_json() if self.config else None,
                "kid": self._keys[-1].kid if self._keys else None,
                "emitted": len(self.log), "counts": counts,
                "idle": not self._queue and not self._busy and not self._held,
            }

    def _start(self) -> None:
        assert self.config is not None
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        while len(self._threads) < self.config.workers:
            thread = threading.Thread(
                target=self._run, name=f"sim-live-events-{len(self._threads)}", daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        session = requests.Session()
        session.trust_env = False  # deliveries go where configured, never via an env proxy
        while True:
            with self._lock:
                item, config, generation = self._next()
                self._busy += 1
            try:
                self._deliver(session, item, config, generation)
            except Exception as exc:  # never let the thread die: record and carry on
                item.status, item.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def _next(self) -> tuple[Outgoing, LiveEventsConfig, int]:
        """Wait (lock held) for the earliest due event."""
        while True:
            if self._queue and self.config is not None:
                due = self._queue[0][0]
                wait = due - time.monotonic()
                if wait <= 0:
                    _, _, item = heapq.heappop(self._queue)
                    return item, self.config, self._generation
                self._lock.wait(wait)
            else:
                self._lock.wait()

    def _deliver(
        self, session: requests.Session, item: Outgoing, config: LiveEventsConfig,
        generation: int,
    ) -> None:
        if config.ndjson_path:
            with open(config.ndjson_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(item.document, separators=(",", ":")) + "\n")
        if not config.url:
            self._finish(item, generation, "delivered", None)
            return
        document = to_caliper(item.document) if config.format == "caliper" else item.document
        now = int(time.time())
        with self._lock:
            key = self._signing_key()
        token = key.sign({**document, "iat": now, "exp": now + TOKEN_LIFETIME})
        item.token = token
        error = None
        for delay in (0.0, *RETRY_DELAYS):
            time.sleep(delay)
            item.attempts += 1
            try:
                response = session.post(
                    config.url, data=token, timeout=config.timeout,
                    headers={"Content-Type": "application/jwt"},
                )
                if response.status_code < 300:
                    self._finish(item, generation, "delivered", None)
                    return
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500:
                    break  # the subscriber refused it: retrying would not help
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
        self._finish(item, generation, "failed", error)

    def _finish(self, item: Outgoing, generation: int, status: str, error: str | None) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a reset happened meanwhile: the item belongs to a forgotten world
            item.deliveries += status == "delivered"
            if item.status != "delivered":
                item.status = status
            item.error = error


# -- building the events ---------------------------------------------------------------------


def global_id(config: LiveEventsConfig, local: int | None) -> str | None:
    return None if local is None else str(config.shard * SHARD_FACTOR + local)


def event_time(state: SimulatorState) -> str:
    moment = state.now().astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def metadata(
    state: SimulatorState, ctx: Context, event_name: str, course_id: int | None,
) -> dict[str, Any]:
    """Canvas-format metadata (§1.3): request-originated, or job-originated for SIS jobs."""
    config = state.live_events.config
    assert config is not None
    meta: dict[str, Any] = {
        "event_name": event_name, "event_time": event_time(state), "producer": "canvas",
        "root_account_id": global_id(config, 1), "root_account_uuid": "simulated-root-account",
    }
    if ctx.channel == "sis" or ctx.job_tag or ctx.actor_user_id is None:
        meta.update({
            "job_id": ctx.job_id or str(1000 + (ctx.sis_import_id or 0)),
            "job_tag": ctx.job_tag or (SIS_JOB_TAG if ctx.channel == "sis" else "Delayed::Job"),
        })
        return meta
    actor = state.users.get(ctx.actor_user_id)
    base = ctx.base_url or f"https://{config.hostname}"
    meta.update({
        "user_id": global_id(config, ctx.actor_user_id),
        "real_user_id": global_id(config, ctx.real_user_id),
        "user_login": actor.login_id if actor else None,
        "user_sis_id": actor.sis_user_id if actor else None,
        "user_account_id": global_id(config, 1),
        "developer_key_id": ctx.developer_key_id,
        "context_type": "Course" if course_id is not None else None,
        "context_id": global_id(config, course_id),
        "context_role": _context_role(state, ctx.actor_user_id, course_id),
        "request_id": ctx.request_context_id,
        "session_id": ctx.session_id,
        "hostname": base.split("://", 1)[-1].split("/", 1)[0],
        "http_method": ctx.http_method or "POST",
        "url": (ctx.url if ctx.url and "://" in ctx.url else base + (ctx.url or "")),
        "referrer": ctx.referrer,
        "user_agent": ctx.user_agent or (BROWSER_UA if ctx.session_id else None),
        "client_ip": "127.0.0.1",
        "time_zone": "UTC",
    })
    return meta


def _context_role(state: SimulatorState, user_id: int, course_id: int | None) -> str | None:
    if course_id is not None:
        for enrollment in state.course_enrollments(course_id):
            if enrollment.user_id == user_id and enrollment.workflow_state == "active":
                return enrollment.type
    user = state.users.get(user_id)
    return "AccountAdmin" if user is not None and user.admin else None


def enrollment_event(
    state: SimulatorState, enrollment: Enrollment, ctx: Context, event_name: str,
) -> dict[str, Any]:
    config = state.live_events.config
    assert config is not None
    user = state.users.get(enrollment.user_id)
    body: dict[str, Any] = {
        "enrollment_id": global_id(config, enrollment.id),
        "course_id": global_id(config, enrollment.course_id),
        "user_id": global_id(config, enrollment.user_id),
        "user_name": user.name if user else None,
        "type": enrollment.type,
        "created_at": iso(enrollment.created_at),
        "updated_at": iso(enrollment.updated_at),
        "limit_privileges_to_course_section": enrollment.limit_privileges_to_course_section,
        "course_section_id": global_id(config, enrollment.course_section_id),
        "workflow_state": enrollment.workflow_state,
    }
    if enrollment.type == OBSERVER:
        body["associated_user_id"] = global_id(config, enrollment.associated_user_id)
    return {"metadata": metadata(state, ctx, event_name, enrollment.course_id), "body": body}


def emit_enrollment(
    state: SimulatorState, enrollment: Enrollment, ctx: Context, created: bool,
) -> None:
    if state.live_events.enabled:
        name = "enrollment_created" if created else "enrollment_updated"
        state.live_events.emit(enrollment_event(state, enrollment, ctx, name))


def emit_sis_batch(
    state: SimulatorState, sis_import: SisImport, ctx: Context, created: bool,
) -> None:
    config = state.live_events.config
    if config is None:
        return
    name = "sis_batch_created" if created else "sis_batch_updated"
    body = {
        "sis_batch_id": global_id(config, sis_import.id),
        "account_id": global_id(config, sis_import.account_id),
        "workflow_state": sis_import.workflow_state,
    }
    state.live_events.emit({"metadata": metadata(state, ctx, name, None), "body": body})


# -- Caliper ---------------------------------------------------------------------------------


def _urn(kind: str, value: Any) -> str | None:
    return None if value is None else f"urn:instructure:canvas:{kind}:{value}"


def to_caliper(document: dict[str, Any]) -> dict[str, Any]:
    """The Canvas-format event as an IMS Caliper 1.1 envelope (provenance-sources.md §1.6)."""
    meta, body = document["metadata"], document["body"]
    name = meta["event_name"]
    entity, _, verb = name.rpartition("_")
    action = {"created": "Created", "updated": "Modified"}.get(verb, verb)
    job = "job_tag" in meta and "user_id" not in meta
    actor: dict[str, Any]
    if job or meta.get("user_id") is None:
        actor = {"id": f"http://{meta.get('hostname') or 'www.canvaslms.com'}/",
                 "type": "SoftwareApplication"}
    else:
        actor = {"id": _urn("user", meta["user_id"]), "type": "Person", "extensions": {
            "com.instructure.canvas": _compact({
                "user_login": meta.get("user_login"), "user_sis_id": meta.get("user_sis_id"),
                "root_account_id": meta.get("root_account_id"),
                "real_user_id": meta.get("real_user_id"), "entity_id": meta.get("user_id"),
            }),
        }}
    ids = {"course_id": "course", "course_section_id": "courseSection", "user_id": "user",
           "associated_user_id": "user", "account_id": "account"}
    object_ext = {k: _urn(ids[k], v) if k in ids else v for k, v in body.items()
                  if k not in ("enrollment_id", "sis_batch_id", "created_at", "updated_at")}
    object_id = body.get("enrollment_id") or body.get("sis_batch_id")
    ext = _compact({
        "hostname": meta.get("hostname"), "request_id": meta.get("request_id"),
        "request_url": meta.get("url"), "user_agent": meta.get("user_agent"),
        "client_ip": meta.get("client_ip"),  # no developer_key_id: undocumented in Caliper
        "job_id": meta.get("job_id"), "job_tag": meta.get("job_tag"), "version": "1.0.0",
    })
    event: dict[str, Any] = {
        "@context": "http://purl.imsglobal.org/ctx/caliper/v1p1",
        "id": f"urn:uuid:{secrets.token_hex(16)}", "type": "Event", "actor": actor,
        "action": action,
        "object": {
            "id": _urn(entity, object_id), "type": "Entity",
            "dateCreated": body.get("created_at"), "dateModified": body.get("updated_at"),
            "extensions": {"com.instructure.canvas": {**object_ext, "entity_id": object_id}},
        },
        "eventTime": meta["event_time"],
        "extensions": {"com.instructure.canvas": ext},
    }
    if meta.get("context_id"):
        event["group"] = {"id": _urn("course", meta["context_id"]), "type": "CourseOffering"}
    if meta.get("session_id"):
        event["session"] = {"id": _urn("session", meta["session_id"]), "type": "Session"}
    if meta.get("referrer"):
        event["referrer"] = meta["referrer"]
    return {
        "sensor": f"http://{meta.get('hostname') or 'www.canvaslms.com'}/",
        "sendTime": meta["event_time"],
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1", "data": [event],
    }


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
