"""The local API as a user of `make run` meets it: its own process, HTTP with keep-alive, 1-row requests that
continue one user's stream, its state in SQLite; against the bare round trip of its store in the same run."""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from carryover.manifest import Manifest
from carryover.store.sqlite import SCHEMA, SYNCHRONOUS, Durability

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"carryover serving \S+ at (http://\S+)")


@contextmanager
def local_server(bundle: Path, durability: Durability = "process") -> Iterator[str]:
    """`make run`'s server on a fresh state file, in a process of its own; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="bench-state-") as scratch:
        environ = os.environ | {
            "PORT": "0",
            "STATE_FILE": str(Path(scratch) / "state.sqlite3"),
            "LOCAL_DURABILITY": durability,
            "PYTHONPATH": f"{ROOT / 'handler'}:{ROOT}",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", str(bundle)],
            cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            for line in process.stdout:
                found = BANNER.search(line)
                if found:
                    threading.Thread(target=process.stdout.read, daemon=True).start()
                    yield found.group(1)
                    break
            else:
                raise RuntimeError(f"the local API did not start (exit {process.wait()})")
        finally:
            process.terminate()
            process.wait(30)


def rows_body(manifest: Manifest, rows: int, seed: int = 0) -> bytes:
    """A valid request body of `rows` rows for the model (token ids for a token model)."""
    rng = np.random.default_rng(seed)
    if manifest.input.vocabulary is not None:
        inputs = rng.integers(0, manifest.input.vocabulary, size=rows).tolist()
    else:
        inputs = rng.normal(size=(rows, manifest.input.features)).round(4).tolist()
    return json.dumps({"inputs": inputs}).encode()


def stream_latency(url: str, body: bytes, requests: int, user: str, warmup: int = 20) -> list[float]:
    """Milliseconds per request, one keep-alive connection, every request continuing `user`'s stream."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    samples = []
    for index in range(warmup + requests):
        started = time.perf_counter()
        connection.request("POST", f"/users/{user}/predict", body=body, headers={"content-type": "application/json"})
        reply = connection.getresponse()
        payload = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"the local API answered {reply.status}: {payload[:200]!r}")
        if index >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    return samples


def concurrent_latency(url: str, body: bytes, clients: int, requests: int) -> tuple[list[float], float]:
    """`clients` connections at once, each for a user of its own: milliseconds per request, and requests/s."""
    samples: list[list[float]] = [[] for _ in range(clients)]

    def client(index: int) -> None:
        samples[index] = stream_latency(url, body, requests, f"crowd-{index}-{time.monotonic_ns()}", warmup=5)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return [sample for found in samples for sample in found], clients * requests / elapsed


def bare_round_trip(item_bytes: int, durability: Durability, count: int) -> list[float]:
    """Milliseconds for the store's own work on a request, alone: one read of a row, then one write transaction
    of a row of the same size (BEGIN IMMEDIATE, read, write, COMMIT) on a SQLite file set up as the store's."""
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as scratch:
        path = Path(scratch) / "bare.sqlite3"
        with closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
            connection.executescript(SCHEMA)
            row = ("bare", "model", "x" * item_bytes, 0)
            connection.execute("INSERT INTO items VALUES (?, ?, ?, ?)", row)
            key, samples = ("bare", "model"), []
            for _ in range(count):
                started = time.perf_counter()
                connection.execute("SELECT item FROM items WHERE user_id = ? AND model = ?", key).fetchall()
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("SELECT item FROM items WHERE user_id = ? AND model = ?", key).fetchall()
                connection.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", row)
                connection.execute("COMMIT")
                samples.append((time.perf_counter() - started) * 1000)
    return samples
