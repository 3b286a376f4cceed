"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the time goes.

    .venv/bin/python bench/hotpath_profile.py PROFILE.txt

Prints the share of samples that include each of a few named parts of the hot path
(inclusive), then the functions with the most samples of their own (self, by source line,
so the line of a COMMIT shows up as such).
"""

from __future__ import annotations

import linecache
import re
import sys
from collections import Counter
from pathlib import Path

# (label, regular expression matched against each frame "function (file:line)").
PARTS = [
    ("whole request in the worker thread (gthread handle)", r"^(?:\w+\.)?handle \(gunicorn/workers/gthread"),
    ("lean path for plain GET/HEAD (web/fastpath.py)", r"^(?:\w+\.)?__call__ \(ledger_proxy/web/fastpath"),
    ("Flask dispatch (full_dispatch_request)", r"^(?:\w+\.)?full_dispatch_request \("),
    ("  the proxy view (forward)", r"^forward \(ledger_proxy/web/proxy"),
    ("    record_intent (intent transaction)", r"^(?:\w+\.)?record_intent \("),
    ("    recording.settle (outcome transaction)", r"^(?:\w+\.)?settle \(ledger_proxy/"),
    ("    any write transaction (BEGIN ... COMMIT)", r"^(?:\w+\.)?(write_transaction|_commit) \("),
    ("    waiting for the group commit's turn (GroupCommit.run)", r"^GroupCommit\.run \(ledger_proxy/core/ledger\.py:\d+\)$"),
    ("    the upstream request (_send, plain_response)", r"^(?:\w+\.)?(_send|plain_response) \(ledger_proxy/"),
    ("    requests' session machinery (requests/)", r"\(requests/"),
    ("    urllib3 (urllib3/)", r"\(urllib3/"),
    ("    the actor (token -> user)", r"^(?:\w+\.)?_actor \(ledger_proxy/"),
    ("  new ledger handle (db.connect)", r"^(?:\w+\.)?connect \(ledger_proxy/(core/)?(db|ledger)\.py"),
    ("  closing the ledger handle at teardown (close_db)", r"^(?:\w+\.)?close_db \("),
    ("  access log line (logs.py)", r"\(ledger_proxy/(ops/)?logs\.py"),
    ("  metrics (metrics.py / prometheus_client)", r"\(ledger_proxy/(ops/)?metrics\.py|\(prometheus_client/"),
    ("gunicorn writing the response (gunicorn/http/wsgi.py)", r"^(?:\w+\.)?(write|send_headers) \(gunicorn/http/wsgi"),
]


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """`function (path/inside/site-packages.py:line)`: the path from the package on."""
    return re.sub(r"\((?:[^()]*/(?:site-packages|lib/python3\.\d+|wt-[\w-]+|main)/)", "(", frame)


def _source(frame: str) -> str:
    """The text of the frame's source line, when the file is here."""
    match = re.search(r"\(([^()]+\.py):(\d+)\)$", frame)
    if not match:
        return ""
    text = linecache.getline(match.group(1), int(match.group(2))).strip()
    return f"   `{text[:60]}`" if text else ""


def summarise(path: Path, top: int = 15) -> str:
    raw = load(path)
    sources = {_short(frames[-1]): _source(frames[-1]) for frames, _ in raw}
    stacks = [([_short(f) for f in frames], n) for frames, n in raw]
    total = sum(n for _, n in stacks)
    if not total:
        return "no samples"
    lines = [f"{total} samples"]
    for label, pattern in PARTS:
        regex = re.compile(pattern)
        hit = sum(n for frames, n in stacks if any(regex.search(f) for f in frames))
        lines.append(f"  {100 * hit / total:5.1f} %  {label}")
    own: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
    lines.append(f"  top {top} by own samples (self):")
    for frame, n in own.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {frame}{sources.get(frame, '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"== {name}")
        print(summarise(Path(name)))
