"""How long the local API's SQLite store takes to open, and the local server to start, with many users kept.

A database of `users` items (each a realistic item for the bundle's model, as the service writes it; only the
user id varies) is generated once under the cache directory and reused while the schema, the item's layout and
the count are unchanged (and its items are still live: they expire as a real state does, after 30 days). Then,
in fresh processes, median of 3: opening SQLiteStateStore and serving the first load() and save() of an existing
user, and the whole `python -m infra.local BUNDLE` start up to its banner and a first POST answered; each on that
database and on an empty one. The page cache is left as it is (warm after generation).

    PYTHONPATH=handler:. python -m tests.benchmarks.startup BUNDLE [--users 1000000] [--cache .build/bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carryover.core.domain import UserState
from carryover.manifest import Manifest
from carryover.store.codec import PARTITION_KEY, TTL_ATTRIBUTE, encode, item_key, to_json
from carryover.store.item import HISTORY, WRITE_ID_BYTES, Absent, Item, Lifetimes, Stored, Write, successor
from carryover.store.sqlite import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / ".build" / "bundle"
STATE_TTL = timedelta(days=30)  # Settings' default STATE_TTL_DAYS
BATCH = 10_000
REPEATS = 3
BYTES_PER_USER = 4500  # what the store takes on disk a user, the demo's item (4.49 GB for a million, measured)
PLACEHOLDER = "@@user@@"
BANNER = re.compile(r"^carryover serving .* at (http\S+)\s*$")
STORE_PROBE = """
import json, sys, time
from datetime import UTC, datetime, timedelta
path, model, user, version, blob_bytes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
from pathlib import Path
from carryover.core.domain import UserState
from carryover.store.item import Lifetimes, Write
from carryover.store.sqlite import SQLiteStateStore
now = lambda: datetime.now(UTC)
start = time.perf_counter()
store = SQLiteStateStore(Path(path), model, Lifetimes(state_ttl=timedelta(days=30)), now)
opened = time.perf_counter()
read = store.load(user)
loaded = time.perf_counter()
steps = getattr(getattr(read, "state", None), "stream", 0)
store.save(user, Write(UserState.of_one(version, bytes(blob_bytes), steps + 1, now())), read)
saved = time.perf_counter()
store.close()
print(json.dumps({"open": opened - start, "first load": loaded - opened, "first save": saved - loaded,
                  "found": type(read).__name__}))
"""


def demo_item(bundle: Path = DEMO_BUNDLE, writes: int = HISTORY + 4) -> Item:
    """An item as the service leaves it after `writes` requests without a key: the bundle's model and version,
    a state blob of its size (float32 values), a full write history; user id "demo"."""
    manifest = Manifest.read(bundle)
    values = array("f", [((i * 7919) % 2001 - 1000) / 1000 for i in range(manifest.state_bytes // 4)])
    now = datetime.now(UTC)
    read: Stored = Absent()
    for step in range(1, writes + 1):
        state = UserState.of_one(manifest.version, values.tobytes(), step * 3, now)
        written = successor(read, Write(state), os.urandom(WRITE_ID_BYTES), now, Lifetimes(STATE_TTL))
        read = written
    return encode(item_key("demo", manifest.name), written)


def _layout(value: Any) -> Any:
    """What an item's layout is: attribute names, types and value sizes, not the values."""
    if isinstance(value, dict):
        return {name: _layout(v) for name, v in sorted(value.items())}
    return len(value) if isinstance(value, bytes | str) else type(value).__name__


def _item_of(item: bytes | Item, bundle: Path) -> Item:
    """`item` as an item: bytes are a state blob put in the demo item's place."""
    if isinstance(item, bytes):
        found = demo_item(bundle)
        found["state"] = {"B": item}
        return found
    return dict(item)


def _generate(path: Path, users: int, item: Item) -> float:
    """Writes `users` copies of `item` (user ids user-00000000, ...) into a new database at `path`; seconds.
    One transaction, no rollback journal while generating (a partial file is thrown away), then WAL as the
    store keeps it."""
    template = to_json(item | {PARTITION_KEY: {"S": PLACEHOLDER}})
    prefix, suffix = template.split(PLACEHOLDER)
    model, expires_at = item["model"]["S"], int(item[TTL_ATTRIBUTE]["N"])
    started = time.perf_counter()
    shown = started
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        for first in range(0, users, BATCH):
            ids = [f"user-{index:08d}" for index in range(first, min(users, first + BATCH))]
            db.executemany(
                "INSERT INTO items (user_id, model, item, expires_at) VALUES (?, ?, ?, ?)",
                ((user, model, f"{prefix}{user}{suffix}", expires_at) for user in ids),
            )
            done = first + len(ids)
            if time.perf_counter() - shown > 10 or done == users:
                shown = time.perf_counter()
                rate = done / (shown - started)
                print(
                    f"  {done:,}/{users:,} users ({100 * done / users:.0f} %), {path.stat().st_size / 1e9:.2f} GB, "
                    f"{rate:,.0f} users/s, about {(users - done) / rate:.0f} s left",
                    file=sys.stderr,
                    flush=True,
                )
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    return time.perf_counter() - started


def database(users: int, item: Item, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The cached database of `users` copies of `item`, generated when missing, of another schema or item layout,
    or when its items would expire within a day; with what its sidecar records (generation seconds, ...)."""
    key = hashlib.sha256(json.dumps([SCHEMA, _layout(item), item["model"], users]).encode()).hexdigest()[:16]
    path, sidecar = cache / f"users-{users}.sqlite3", cache / f"users-{users}.json"
    if path.is_file() and sidecar.is_file():
        recorded = json.loads(sidecar.read_text())
        if recorded["key"] == key and recorded["expires_at"] > time.time() + 86400:
            return path, recorded | {"generated now": 0}
    cache.mkdir(parents=True, exist_ok=True)
    for stale in (path, sidecar, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    size = users * BYTES_PER_USER
    free = shutil.disk_usage(cache).free
    if free < 2 * size:
        raise OSError(f"{users:,} users need about {size / 1e9:.1f} GB in {cache}; {free / 1e9:.1f} GB free")
    print(f"startup: generating {users:,} users (about {size / 1e9:.1f} GB) in {path}, once", file=sys.stderr)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        seconds = _generate(partial, users, item)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    recorded = {"key": key, "users": users, "generation s": seconds, "expires_at": int(item[TTL_ATTRIBUTE]["N"])}
    sidecar.write_text(json.dumps(recorded))
    return path, recorded | {"generated now": 1}


def _evict(path: Path) -> None:
    """Drops the database's pages (only this file's) from the page cache, as after a reboot."""
    for part in path.parent.glob(path.name + "*"):
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "handler"), str(ROOT)])}


def _store_open(path: Path, item: Item, user: str) -> dict[str, Any]:
    """One fresh process: open the store on `path`, the first load() of `user`, the first save()."""
    args = [path, item["model"]["S"], user, item["model_version"]["S"], len(item["state"]["B"])]
    done = subprocess.run(
        [sys.executable, "-c", STORE_PROBE, *map(str, args)], capture_output=True, text=True, env=_env(), timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"store probe failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _server_start(bundle: Path, state_file: Path, user: str) -> dict[str, float]:
    """One `python -m infra.local BUNDLE` on `state_file`: seconds to its banner, then to a first POST answered."""
    spec = Manifest.read(bundle).input
    inputs = [1, 2, 3] if spec.kind == "tokens" else [[0.1] * spec.features]
    env = _env() | {"PORT": "0", "STATE_FILE": str(state_file)}
    env.pop("DYNAMODB_ENDPOINT", None)
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "infra.local", str(bundle)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = None
            for line in server.stdout:
                if match := BANNER.match(line):
                    url = match.group(1)
                    break
            if url is None:
                errors.seek(0)
                raise RuntimeError(f"the local server stopped before its banner:\n{errors.read()[-3000:]}")
            banner = time.perf_counter()
            request = urllib.request.Request(
                f"{url}/users/{user}/predict",
                data=json.dumps({"inputs": inputs}).encode(),
                headers={"content-type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=120) as reply:
                assert reply.status == 200, reply.read()
            answered = time.perf_counter()
        finally:
            server.send_signal(signal.SIGINT)  # as Ctrl-C: the server closes the store
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return {"server start": banner - started, "server first POST": answered - banner}


def startup_with_users(
    users: int = 1_000_000,
    item: bytes | Item | None = None,
    cache: Path = ROOT / ".build" / "bench",
    *,
    bundle: Path = DEMO_BUNDLE,
) -> dict[str, float]:
    """Medians of 3 fresh processes each, seconds: "users: open", "users: first load", "users: first save",
    "users: server start" (to the banner), "users: server first POST"; the same with "users, file not cached: "
    (the database's pages dropped from the page cache first, as after a reboot) and with "empty: "; beside
    them "users", "item bytes" (its DynamoDB JSON), "db_mb" (the file on disk), "generation s" (when it was
    made) and "generated now" (1 if this call made it). `item`: an item (only its user id is replaced), a
    state blob for the demo item, or None for the demo item of `bundle`; `bundle` is what the server serves."""
    found = _item_of(item, bundle) if item is not None else demo_item(bundle)
    path, recorded = database(users, found, cache)
    empty = cache / "empty.sqlite3"
    if not empty.is_file():
        with closing(sqlite3.connect(empty, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="startup-", dir=cache) as scratch:
        for run in range(REPEATS):
            existing = f"user-{(users // 2 + run * 7919) % users:08d}"
            fresh = Path(scratch) / f"empty-{run}.sqlite3"
            shutil.copy(empty, fresh)
            for label, db_path, user, expected in (
                ("users", path, existing, "Live"),
                ("users, file not cached", path, existing, "Live"),
                ("empty", fresh, "u", "Absent"),
            ):
                if label == "users, file not cached":
                    _evict(path)
                probe = _store_open(db_path, found, user)
                assert probe.pop("found") == expected, f"{label}: {user} was not {expected}"
                for name, value in probe.items():
                    samples.setdefault(f"{label}: {name}", []).append(value)
            served = Path(scratch) / f"served-{run}.sqlite3"
            shutil.copy(empty, served)
            somebody = f"user-{run * 104729 % users:08d}"
            for label, db_path, user in (
                ("users", path, somebody),
                ("users, file not cached", path, somebody),
                ("empty", served, "u"),
            ):
                if label == "users, file not cached":
                    _evict(path)
                for name, value in _server_start(bundle, db_path, user).items():
                    samples.setdefault(f"{label}: {name}", []).append(value)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {name: statistics.median(values) for name, values in samples.items()} | {
        "users": float(users),
        "item bytes": float(len(to_json(found))),
        "db_mb": size / 1e6,
        "generation s": float(recorded["generation s"]),
        "generated now": float(recorded["generated now"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=DEMO_BUNDLE)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=ROOT / ".build" / "bench")
    args = parser.parse_args()
    found = startup_with_users(args.users, None, args.cache.resolve(), bundle=args.bundle.resolve())
    for name, value in found.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
