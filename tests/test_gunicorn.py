"""`gunicorn wsgi:app` with several workers and threads: concurrent clients lose no row."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from canvasapi import Canvas

from .processes import gunicorn

pytestmark = pytest.mark.slow

CLIENTS = 8
PER_CLIENT = 10


def test_concurrent_clients_through_gunicorn_lose_no_enrollment(world, sim, tmp_path):
    users = [sim.add_user(f"Load {n:03d}") for n in range(CLIENTS * PER_CLIENT)]
    database = tmp_path / "ledger.sqlite3"
    settings = {
        "LEDGER_PROXY_CANVAS_URL": sim.url,
        "LEDGER_PROXY_DATABASE": str(database),
        "LEDGER_PROXY_TOKEN_HASH_KEY": "k",
    }
    with gunicorn(settings, workers=4, threads=4) as base:

        def client(index: int) -> list[int]:
            canvas = Canvas(f"{base}/i/client-{index}", world.admin["token"])
            course = canvas.get_course(world.course["id"])
            mine = users[index * PER_CLIENT : (index + 1) * PER_CLIENT]
            return [course.enroll_user(user["id"]).id for user in mine]

        with ThreadPoolExecutor(CLIENTS) as pool:
            made = [eid for ids in pool.map(client, range(CLIENTS)) for eid in ids]

    truth = {
        e["id"] for e in sim.enrollments(course_id=world.course["id"])
        if e["origin"]["channel"] == "api"
    }
    assert len(made) == len(set(made)) == CLIENTS * PER_CLIENT
    assert set(made) == truth
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT enrollment_id, action, integration FROM events").fetchall()
        statuses = conn.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall()
    assert sorted(r[0] for r in rows) == sorted(truth)
    assert {r[1] for r in rows} == {"created"}
    assert {r[2] for r in rows} == {f"client-{i}" for i in range(CLIENTS)}
    assert statuses == [("completed", CLIENTS * PER_CLIENT)]
