"""The local API's SQLite store as a user's machine meets it: two servers on one state file, a database that is
locked, read-only or full, and the server killed at any moment. Nothing acknowledged is lost, nothing is
applied twice, and every crash leaves a file the next start opens."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carryover.composition import build_service, lifetimes
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store.codec import to_json
from carryover.store.dynamodb import utc_now
from carryover.store.sqlite import SQLiteStateStore
from infra.local.journal import import_journal
from tests import scenarios
from tests.clients import HandlerClient, HttpClient, Reply
from tests.conftest import Served
from tests.stores import SQLiteItems

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"carryover serving \S+ at (http://\S+)")


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """As a service manager or a CI runner stops it: SIGTERM (a background job's SIGINT is ignored)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def serve(bundle: Path, state: Path, file_limit: int | None = None, **settings: str) -> Server:
    """`make run`'s server in a process of its own on `state`; `file_limit` caps the size of any file it writes;
    `settings`: more of its environment."""

    def limited() -> None:
        if file_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    environ = (
        os.environ | settings | {"PORT": "0", "STATE_FILE": str(state), "PYTHONPATH": f"{ROOT / 'handler'}:{ROOT}"}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", str(bundle)],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limited,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        found = BANNER.search(line)
        if found:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
            return Server(process, found.group(1))
    raise AssertionError(f"the server did not start: exit {process.wait()}")


def keyed(client: HttpClient, user: str, inputs: np.ndarray, key: str) -> tuple[Reply, list[str]]:
    """A request as the project's client sends it: the same key on every retry of a 503 or a conflict; the last
    reply, and what each attempt before it was answered."""
    answers: list[str] = []
    for _ in range(50):
        reply = client.predict(user, inputs, key=key)
        if reply.status not in (503, 409) or reply.body["error"]["code"] == "already_applied":
            return reply, answers
        answers.append(f"{reply.status} {reply.body['error']['code']}")
        time.sleep(0.05)
    return reply, answers


def check_replays(seed: Served, items: SQLiteItems, user: str, done: list[tuple[int, np.ndarray]]) -> None:
    """The acknowledged requests of `user`, in the order their steps report, are exactly the saved state: one
    after another through Keras, they give its steps and its state."""
    done.sort(key=lambda pair: pair[0])
    assert len({steps for steps, _ in done}) == len(done), "two requests reported the same steps"
    whole = np.concatenate([rows for _, rows in done])
    item = items.saved(user)
    assert int(item["steps"]["N"]) == len(whole) == done[-1][0]
    seed.graph.reference(seed.keras_model, whole)  # leaves Keras' own final state in the stateful layer
    saved = seed.manifest.unpack_state(bytes(item["state"]["B"]))
    assert saved is not None
    expected = [np.asarray(v)[0] for v in seed.keras_model.get_layer("lstm").states]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(saved, expected, strict=True)) <= 1e-5


def test_two_servers_on_one_state_file_lose_and_double_nothing(served, tmp_path):
    """Two `make run`s on one checkout: 8 threads each send keyed requests through both, for one shared user
    and one user per server; every acknowledged request is in the file once, before and after a restart."""
    seed, state = served["seed"], tmp_path / "state.sqlite3"
    servers = [serve(seed.path, state), serve(seed.path, state)]
    clients = [HttpClient(server.url) for server in servers]
    done: dict[str, list[tuple[int, np.ndarray]]] = {"shared": [], "first": [], "second": []}
    lock, rng = threading.Lock(), np.random.default_rng(5)
    plans = [
        [
            (user, scenarios.sequence(seed, rng, int(rng.integers(1, 4))))
            for user in ("shared", ("first", "second")[t % 2])
        ]
        * 6
        for t in range(8)
    ]

    def send(thread: int) -> None:
        for index, (user, rows) in enumerate(plans[thread]):
            client = clients[(thread + index) % 2] if user == "shared" else clients[("first", "second").index(user)]
            reply, before = keyed(client, user, rows, f"t{thread}-{index}")
            assert reply.status == 200, (reply.body, before)
            with lock:
                done[user].append((reply.body["steps"], rows))

    try:
        threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for server in servers:
            server.stop()
    assert sum(len(found) for found in done.values()) == 8 * 12
    for user, found in done.items():
        check_replays(seed, SQLiteItems(state), user, found)
    again = serve(seed.path, state)
    try:
        assert {user: HttpClient(again.url).state(user).body["steps"] for user in done} == {
            user: max(steps for steps, _ in found) for user, found in done.items()
        }
    finally:
        again.stop()


def stream(client: HttpClient, user: str, stop: threading.Event, acknowledged: dict[str, int]) -> None:
    """Two rows a request until stopped or the server is gone; `acknowledged` the most steps answered 200."""
    while not stop.is_set():
        try:
            reply = client.predict(user, [[0.25] * 8, [0.5] * 8])
        except OSError:
            return
        if reply.status == 200:
            acknowledged[user] = max(acknowledged.get(user, 0), reply.body["steps"])


def test_server_killed_at_any_moment_keeps_every_acknowledged_write(served, tmp_path):
    """kill -9 at a random moment while 8 writers stream, ten times over: each restart opens the file, and every
    request answered 200 is in it (the state holds at least the steps it reported)."""
    seed, state, rng = served["seed"], tmp_path / "state.sqlite3", random.Random(11)
    acknowledged: dict[str, int] = {}
    for round_ in range(10):
        server, stop = serve(seed.path, state), threading.Event()
        client = HttpClient(server.url)
        writers = [threading.Thread(target=stream, args=(client, f"w{i}", stop, acknowledged)) for i in range(8)]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.2, 1.5))
        server.kill()
        stop.set()
        for writer in writers:
            writer.join()
        items = SQLiteItems(state)
        lost = {user: steps for user, steps in acknowledged.items() if int(items.saved(user)["steps"]["N"]) < steps}
        assert lost == {}, f"round {round_}: acknowledged writes gone after kill -9: {lost}"
    with sqlite3.connect(state) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_full_disk_is_503_and_loses_nothing_acknowledged(served, tmp_path):
    """The server may write its files only up to a size limit: writes past it are 503, the ones answered 200
    before are all there after a restart without the limit, each applied once."""
    seed, state = served["seed"], tmp_path / "state.sqlite3"
    SQLiteStateStore(state, seed.manifest.name, lifetimes(_settings(seed)), utc_now).close()  # the file exists
    server = serve(seed.path, state, file_limit=256 * 1024)
    client, answers = HttpClient(server.url), []
    try:
        for index in range(400):  # 100 rows a request: its log entry alone is 3 KB
            answers.append(keyed(client, "filling", np.full((100, 8), index / 400, np.float32), f"k{index}")[0].status)
            if answers[-1] == 503:
                break
    finally:
        server.stop()
    assert 503 in answers and answers.count(200) == answers.index(503) > 0, answers
    assert int(SQLiteItems(state).saved("filling")["steps"]["N"]) == 100 * answers.count(200)


def _settings(seed: Served) -> Settings:
    return Settings.from_env({"TABLE_NAME": "local", "MODEL_BUNDLE": str(seed.path)})


@contextmanager
def handler_on(seed: Served, state: Path, busy_timeout_s: float = 0.3) -> Iterator[HandlerClient]:
    settings = _settings(seed)
    store = SQLiteStateStore(state, seed.manifest.name, lifetimes(settings), utc_now, busy_timeout_s=busy_timeout_s)
    try:
        yield HandlerClient(
            create_lambda_handler(build_service(settings, seed.bundles["litert"], store=store), settings)
        )
    finally:
        store.close()


def assert_refused_then_applied_once(client: HandlerClient, items: SQLiteItems, refuse: Any, allow: Any) -> None:
    """503 with Retry-After while `refuse` holds, the item as it was; the same keyed request applied once after."""
    assert client.predict("ada", [[0.1] * 8], key="first").status == 200
    before = items.saved("ada")
    refuse()
    try:
        refused = client.predict("ada", [[0.2] * 8], key="second")
        assert refused.status == 503 and refused.body["error"]["code"] == "store_unavailable"
        assert refused.headers["retry-after"] == "1"
    finally:
        allow()
    assert items.saved("ada") == before
    retried = client.predict("ada", [[0.2] * 8], key="second")
    assert retried.status == 200 and retried.body["steps"] == 2
    assert client.predict("ada", [[0.2] * 8], key="second").headers["idempotent-replayed"] == "true"


def test_a_locked_database_is_503_and_changes_nothing(served, tmp_path):
    state = tmp_path / "state.sqlite3"
    with handler_on(served["seed"], state) as client:
        other = sqlite3.connect(state, isolation_level=None)  # another process's writer, holding the lock
        assert_refused_then_applied_once(
            client, SQLiteItems(state), lambda: other.execute("BEGIN EXCLUSIVE"), lambda: other.execute("COMMIT")
        )
        other.close()


@pytest.mark.parametrize("cache", ["64", "0"], ids=["item cache on", "item cache off"])
def test_a_read_only_database_is_503_keeps_serving_and_changes_nothing(served, tmp_path, cache):
    """The database's files made immutable right after a commit nothing has read since (a reader that has not seen
    the last commit writes its read mark into the memory-mapped `-shm` file: refused there, a SIGBUS): the server
    answers 503 and stays up, serving what needs no store; writable again, the same keyed request applies once."""
    seed, state = served["seed"], tmp_path / "state.sqlite3"
    files = [state, state.with_name("state.sqlite3-wal"), state.with_name("state.sqlite3-shm")]

    def chattr(flag: str) -> None:
        done = subprocess.run(["chattr", flag, *map(str, files)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"this file system cannot make files immutable: {done.stderr.strip()}")

    server = serve(seed.path, state, ITEM_CACHE_MB=cache)
    client = HttpClient(server.url)
    try:
        assert client.predict("ada", [[0.1] * 8], key="first").body["steps"] == 1
        chattr("+i")
        try:
            refused = client.predict("ada", [[0.2] * 8], key="second")
            assert refused.status == 503 and refused.body["error"]["code"] == "store_unavailable"
            assert client.state("ada").status == 503 and client.model().status == 200
        finally:
            chattr("-i")
        assert server.process.poll() is None
        retried = client.predict("ada", [[0.2] * 8], key="second")
        assert retried.status == 200 and retried.body["steps"] == 2
        assert client.predict("ada", [[0.2] * 8], key="second").headers["idempotent-replayed"] == "true"
    finally:
        server.stop()


def test_the_database_holds_the_same_item_dynamodb_would(served, tmp_path):
    """One codec for both stores: the row is the DynamoDB item, attribute for attribute, in DynamoDB JSON."""
    state = tmp_path / "state.sqlite3"
    with handler_on(served["seed"], state) as client:
        client.predict("ada", [[0.1] * 8], key="k")
    with sqlite3.connect(state) as connection:
        (raw,) = connection.execute("SELECT item FROM items").fetchone()
    item = json.loads(raw)
    assert set(item) == {"user_id", "model", "format", "revision", "writes", "expires_at", "keys", "model_version",
                         "state", "steps", "updated_at", "reply", "created", "logged"}  # fmt: skip
    assert item["user_id"] == {"S": "ada"} and item["steps"] == {"N": "1"} and "B" in item["state"]


def test_the_state_an_earlier_release_kept_is_brought_over_once(served, tmp_path):
    """An earlier release's `make run` journalled moto's DynamoDB requests; the first start on SQLite brings its
    items over (a torn last line, from a crash, skipped), and the user continues where they were."""
    seed, state, journal = served["seed"], tmp_path / "state.sqlite3", tmp_path / "local-dynamodb.jsonl"
    with handler_on(seed, tmp_path / "before.sqlite3") as client:
        client.predict("grace", [[0.1] * 8, [0.2] * 8])
    item = SQLiteItems(tmp_path / "before.sqlite3").saved("grace")

    def request(target: str, body: dict[str, Any]) -> str:
        headers = {"x-amz-target": f"DynamoDB_20120810.{target}", "content-type": "application/x-amz-json-1.0"}
        return json.dumps({"headers": headers, "body": json.dumps(body)})

    lines = [
        request("CreateTable", {"TableName": "carryover-local"}),
        request("PutItem", {"TableName": "carryover-local", "Item": json.loads(to_json(item | {"steps": {"N": "1"}}))}),
        request("PutItem", {"TableName": "carryover-local", "Item": json.loads(to_json(item))}),
        request("PutItem", {"TableName": "other-table", "Item": json.loads(to_json(item))}),
    ]
    journal.write_text("\n".join(lines) + '\n{"headers": {"x-amz-target": "DynamoDB_20120810.PutIt')
    assert import_journal(journal, state, "carryover-local") == 1
    assert SQLiteItems(state).saved("grace") == item and not journal.exists()
    assert import_journal(journal.with_suffix(".jsonl.imported"), state, "carryover-local") is None  # once
    with handler_on(seed, state) as client:
        reply = client.predict("grace", [[0.3] * 8])
    assert reply.body["state"] == "continued" and reply.body["steps"] == 3


def test_a_state_folder_that_cannot_be_written_stops_the_server_in_one_line(served, tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this file system cannot make files immutable: {made.stderr.strip()}")
    environ = os.environ | {
        "PORT": "0",
        "STATE_FILE": str(folder / "state.sqlite3"),
        "PYTHONPATH": f"{ROOT / 'handler'}:{ROOT}",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "infra.local", str(served["seed"].path)],
            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1 and len(said) == 1, said
    assert str(folder) in said[0] and "writable" in said[0] and "STATE_FILE=" in said[0]
