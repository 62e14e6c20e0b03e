"""The bootstrap: a new model version's state for every user of the row log, from zero over their whole history,
written beside the state of the version that serves them. Checked against the new model itself (Keras, or the
rows a window holds), both engines, both modes, for users idle and active while it runs; a run killed midway and
run again; a deleted user left out of it and of the export; then step 2 of the rollout answering from all rows.
Also `make compare`'s comparison and the states' export and import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from carryover.bulk.worker import bootstrap_all
from carryover.bundle import ModelBundle, ServedModel
from carryover.composition import build_service, lifetimes
from carryover.config import Settings
from carryover.core.compare import compare
from carryover.core.history import LogEntry, RowLog
from carryover.http.lambda_handler import create_lambda_handler
from carryover.manifest import Manifest
from carryover.store.dynamodb import utc_now
from carryover.store.export import export_lines, import_lines
from carryover.store.item import Live
from carryover.store.sqlite import SQLiteLog, SQLiteStateStore
from infra.bulk_report import comparison_report
from layers.exporter.export import export
from tests.clients import HandlerClient
from tests.unit.test_deploys import Version, versioned, window_model

USERS = [f"user-{index}" for index in range(8)]
ACTIVE = USERS[:2]  # they send while the bootstrap runs
DELETED = USERS[-1]


class Crash(Exception):
    """The bootstrap's process dies."""


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two versions of a carry model (`ranker`) and of a window model (`w`: windows of 6, then of 4 rows)."""
    root = tmp_path_factory.mktemp("bootstrap")
    versioned(31).save(root / "old.keras")
    versioned(32).save(root / "new.keras")
    window_model(1, 6).save(root / "w-old.keras")
    window_model(2, 4).save(root / "w-new.keras")
    for name, model in (("old", "ranker"), ("new", "ranker"), ("w-old", "w"), ("w-new", "w")):
        export(root / f"{name}.keras", root / name, name=model, sequences=2)
    shutil.copytree(root / "new", root / "new+previous")
    shutil.copytree(root / "old", root / "new+previous" / "previous")
    manifest = json.loads((root / "new+previous" / "manifest.json").read_text())
    (root / "new+previous" / "manifest.json").write_text(json.dumps(manifest | {
        "companion": {"role": "previous", "directory": "previous"}}))  # fmt: skip
    return {name: root / name for name in ("old", "new", "w-old", "w-new", "new+previous")} | {"root": root}


class Local:
    """The local stack's store (SQLite) and its log, and a handler serving one bundle on it."""

    def __init__(self, path: Path, bundle: Path) -> None:
        self.path, self.manifest = path, Manifest.read(bundle)
        self.settings = Settings.from_env({"TABLE_NAME": "local", "MODEL_BUNDLE": str(bundle)})
        self.store = SQLiteStateStore(path, self.manifest.name, lifetimes(self.settings), utc_now)

    def handler(self, bundle: Path) -> HandlerClient:
        loaded = ModelBundle.load(bundle, "litert")
        return HandlerClient(
            create_lambda_handler(build_service(self.settings, loaded, store=self.store), self.settings)
        )


class WhileRunning(RowLog):
    """The log, with requests landing for the active users once the bootstrap has read it (the first time)."""

    def __init__(self, log: SQLiteLog, send: Any) -> None:
        self._log, self._send, self.sent = log, send, False

    def users(self) -> list[str]:
        return self._log.users()

    def entries(self, users: Any) -> dict[str, list[LogEntry]]:
        found = self._log.entries(users)
        if not self.sent:
            self.sent = True
            self._send()
        return found


def send_history(client: HandlerClient, features: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Each user's chunks, user-2 restarting midway (`reset`); the last user deleted."""
    sent: dict[str, list[np.ndarray]] = {user: [] for user in USERS}
    for round_ in range(3):
        for user in USERS:
            chunk = rng.normal(size=(int(rng.integers(1, 5)), features)).astype(np.float32)
            reset = user == "user-2" and round_ == 2
            assert client.predict(user, chunk, reset=reset).status == 200
            sent[user] = [chunk] if reset else [*sent[user], chunk]
    assert client.delete(DELETED).status == 204
    return sent


def expected_state(mode: str, version: Any, rows: np.ndarray, window: int) -> np.ndarray:
    if mode == "carry":
        return np.concatenate(version.run(rows)[1])
    padded = np.concatenate([np.zeros((window, rows.shape[1]), np.float32), rows])
    return padded[-window:].ravel()


@pytest.mark.parametrize("mode", ["carry", "window"])
def test_after_a_bootstrap_every_user_holds_the_new_versions_state_over_their_whole_history(
    versions, tmp_path, engine, mode
):
    old, new = (versions["old"], versions["new"]) if mode == "carry" else (versions["w-old"], versions["w-new"])
    local = Local(tmp_path / "state.sqlite3", old)
    client = local.handler(old)
    features = local.manifest.input.features
    rng = np.random.default_rng(23)
    sent = send_history(client, features, rng)

    def send(user: str) -> None:
        chunk = rng.normal(size=(2, features)).astype(np.float32)
        assert client.predict(user, chunk).status == 200
        sent[user].append(chunk)

    def more() -> None:  # lands after the bootstrap read the log; then one more after it read the items
        for user in ACTIVE:
            send(user)
        load_many = local.store.load_many

        def then_a_write(users: Any) -> Any:
            local.store.load_many = load_many  # type: ignore[method-assign]
            found = load_many(users)
            send(ACTIVE[0])  # the bootstrap's write for this user now conflicts, and is planned again
            return found

        local.store.load_many = then_a_write  # type: ignore[method-assign,assignment]

    loaded = ModelBundle.load(new, engine)
    model = ServedModel(loaded.manifest, loaded.engine, "next")
    log = WhileRunning(SQLiteLog(local.path, local.manifest.name), more)
    tally = bootstrap_all(model, local.store, log, utc_now, 10)
    assert tally.users == {"written": len(USERS) - 1}  # the deleted user is not in the log any more
    reference = Version(keras.saving.load_model(new.with_suffix(".keras"), compile=False), loaded.manifest)
    check_states(
        local, loaded.manifest, sent, lambda rows: expected_state(mode, reference, rows, loaded.manifest.window or 0)
    )
    again = bootstrap_all(model, local.store, SQLiteLog(local.path, local.manifest.name), utc_now, 10)
    assert again.users == {"current": len(USERS) - 1}
    local.store.close()


def check_states(local: Local, manifest: Manifest, sent: dict[str, list[np.ndarray]], expected: Any) -> None:
    for user in USERS[:-1]:
        stored = local.store.load(user)
        assert isinstance(stored, Live)
        rows = np.concatenate(sent[user])
        state = stored.state.of(manifest.version, None)
        assert state is not None and (state.since, state.at, stored.state.stream) == (0, len(rows), len(rows))
        assert float(np.max(np.abs(np.frombuffer(state.blob, np.float32) - expected(rows)))) <= 1e-5, user
    assert not isinstance(local.store.load(DELETED), Live)


def test_a_bootstrap_killed_midway_and_run_again_ends_as_one_run(versions, tmp_path, monkeypatch):
    local = Local(tmp_path / "state.sqlite3", versions["old"])
    sent = send_history(local.handler(versions["old"]), 4, np.random.default_rng(5))
    loaded = ModelBundle.load(versions["new"], "litert")
    model = ServedModel(loaded.manifest, loaded.engine, "next")
    put, calls = SQLiteStateStore._put, []

    def dies_on_the_fourth(self: Any, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 4:
            raise Crash
        put(self, *args)

    monkeypatch.setattr(SQLiteStateStore, "_put", dies_on_the_fourth)
    with pytest.raises(Crash):
        bootstrap_all(model, local.store, SQLiteLog(local.path, "ranker"), utc_now, 10)
    monkeypatch.setattr(SQLiteStateStore, "_put", put)
    tally = bootstrap_all(model, local.store, SQLiteLog(local.path, "ranker"), utc_now, 10)
    assert tally.users["current"] >= 1 and tally.users["current"] + tally.users["written"] == len(USERS) - 1
    reference = Version(keras.saving.load_model(versions["new"].with_suffix(".keras"), compile=False), loaded.manifest)
    check_states(local, loaded.manifest, sent, lambda rows: expected_state("carry", reference, rows, 0))
    local.store.close()


def test_step_2_answers_every_bootstrapped_user_from_their_whole_history(versions, tmp_path):
    """After the bootstrap, the rollout's step 2 (new, previous = old) answers from all of the user's rows: its state
    has seen every one (`seen` = `steps`), the answer the new model's over the whole stream."""
    local = Local(tmp_path / "state.sqlite3", versions["old"])
    sent = send_history(local.handler(versions["old"]), 4, np.random.default_rng(6))
    loaded = ModelBundle.load(versions["new"], "litert")
    bootstrap_all(ServedModel(loaded.manifest, loaded.engine, "next"), local.store,
                  SQLiteLog(local.path, "ranker"), utc_now, 10)  # fmt: skip
    more = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    answer = local.handler(versions["new+previous"]).predict("user-3", more).body
    rows = np.concatenate([*sent["user-3"], more])
    assert (answer["state"], answer["seen"], answer["steps"]) == ("continued", len(rows), len(rows))
    reference = Version(keras.saving.load_model(versions["new"].with_suffix(".keras"), compile=False), loaded.manifest)
    outputs = reference.run(rows)[0]
    for name, values in answer["outputs"].items():
        assert float(np.max(np.abs(np.asarray(values) - outputs[name][-3:]))) <= 1e-5
    local.store.close()


def test_compare_reports_the_two_versions_differences_and_the_users_who_diverge_most(versions, tmp_path):
    local = Local(tmp_path / "state.sqlite3", versions["old"])
    send_history(local.handler(versions["old"]), 4, np.random.default_rng(8))
    old, new = (ModelBundle.load(versions[name], "litert") for name in ("old", "new"))
    log = SQLiteLog(local.path, "ranker")
    found = compare(
        ServedModel(old.manifest, old.engine, "answers"), ServedModel(new.manifest, new.engine, "next"), log
    )
    assert found.users == len(USERS) - 1 and found.outputs["score"].total == found.timesteps * 3
    assert found.outputs["score"].largest > 1e-3 and len(found.top) == len(USERS) - 1
    itself = compare(
        ServedModel(old.manifest, old.engine, "answers"), ServedModel(old.manifest, old.engine, "next"), log
    )
    assert itself.outputs["score"].largest == 0.0
    report, chart = comparison_report(found, old.manifest, new.manifest, tmp_path / "compare")
    text = report.read_text()
    assert "| score |" in text and max(found.top)[1] in text and chart.stat().st_size > 10_000
    local.store.close()


def test_every_users_state_is_exported_and_imported_into_another_store(versions, tmp_path):
    local = Local(tmp_path / "state.sqlite3", versions["old"])
    send_history(local.handler(versions["old"]), 4, np.random.default_rng(9))
    lines = list(export_lines(local.store, "ranker", [local.manifest]))
    assert sorted(json.loads(line)["user_id"] for line in lines) == USERS[:-1]  # the deleted user left out
    first = json.loads(lines[0])["versions"][0]
    assert set(first["state"]) == {"gru.h", "lstm.h", "lstm.c"}
    other = Local(tmp_path / "other.sqlite3", versions["old"])
    found = import_lines(other.store, lines)
    assert (found.written, found.existing) == (len(USERS) - 1, 0)
    for user in USERS[:-1]:
        ours, theirs = local.store.load(user), other.store.load(user)
        assert isinstance(ours, Live) and isinstance(theirs, Live)
        assert (ours.state.stream, ours.state.models) == (theirs.state.stream, theirs.state.models)
    assert import_lines(other.store, lines).existing == len(USERS) - 1  # never over an existing state
    local.store.close()
    other.store.close()
