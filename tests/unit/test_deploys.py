"""Every deploy keeps every user's context: items of every past format continue, a newer format is left alone, and
a bundle that keeps a second model (a rollout's next, or its previous for a rollback) keeps both states exact
while instances of both steps serve the same users at once."""

from __future__ import annotations

import json
import random
import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import boto3
import keras
import numpy as np
import pytest

from carryover.bundle import ModelBundle
from carryover.composition import build_service, lifetimes
from carryover.config import ConfigurationError, Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.manifest import Manifest
from carryover.modes import MODES
from carryover.store.blobs import S3Blobs
from carryover.store.codec import from_json
from carryover.store.dynamodb import DynamoDBStateStore, dynamodb_client
from infra.local.server import LocalContext
from infra.table import ensure_table
from layers.exporter.export import export, graph_for
from tests.clients import HandlerClient
from tests.dynamodb_server import DynamoDBServer
from tests.scenarios import assert_matches
from tests.stores import DynamoDBItems
from tests.unit.conftest import ObjectItems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "items"


def versioned(seed: int) -> keras.Model:
    """One architecture, retrained: a stateful GRU under a stateful LSTM, a Dense head; `seed` sets the weights."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.layers.Input(shape=(None, 4), batch_size=1),
            keras.layers.GRU(8, return_sequences=True, stateful=True, name="gru"),
            keras.layers.LSTM(6, return_sequences=True, stateful=True, name="lstm"),
            keras.layers.Dense(3, name="score"),
        ],
        name="ranker",
    )


class Version:
    """A model version as the tests compute it: its Keras model, read for carry mode."""

    def __init__(self, model: keras.Model, manifest: Manifest) -> None:
        self.model, self.graph = graph_for(model, MODES["carry"], None)
        self.manifest = manifest

    def run(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """What this version answers over `rows` from zero, and the state it reaches, as the store lays it out."""
        outputs = self.graph.reference(self.model, rows)  # leaves Keras' own final state in the stateful layers
        layers = [self.model.get_layer(spec.layer) for spec in self.manifest.states]
        return outputs, [np.asarray(value)[0] for layer in layers for value in layer.states]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Bundles of two versions of one model: each alone, (old, next = new) as the exporter writes it, and
    (new, previous = old) laid out the same way."""
    root = tmp_path_factory.mktemp("deploys")
    for name, seed in (("old", 31), ("new", 32)):
        versioned(seed).save(root / f"{name}.keras")
    export(root / "old.keras", root / "old+next", sequences=3, companion=root / "new.keras", role="next")
    for alone in ("old", "new"):
        export(root / f"{alone}.keras", root / alone, name="ranker", sequences=2)
    shutil.copytree(root / "new", root / "new+previous")
    shutil.copytree(root / "old", root / "new+previous" / "previous")
    manifest = json.loads((root / "new+previous" / "manifest.json").read_text())
    manifest["companion"] = {"role": "previous", "directory": "previous"}
    (root / "new+previous" / "manifest.json").write_text(json.dumps(manifest))
    versions = {}
    for name in ("old", "new"):
        model = keras.saving.load_model(root / f"{name}.keras", compile=False)
        versions[name] = Version(model, Manifest.read(root / name))
    return {"root": root, "versions": versions}


@pytest.fixture
def table() -> Any:
    """A table of its own on a DynamoDB over HTTP (moto's backend is one per process: a name per test)."""
    server = DynamoDBServer().start()
    found = DynamoDBItems(dynamodb_client(server.endpoint), f"deploys-{uuid.uuid4().hex[:8]}")
    ensure_table(found.client, found.table)
    found.endpoint = server.endpoint  # type: ignore[attr-defined]
    yield found
    server.stop()


def keeping_objects(table: DynamoDBItems) -> ObjectItems:
    """The same table, its states kept as objects in an S3 bucket on the same server (as states too large for an
    item are)."""
    s3 = cast(Any, boto3.client)("s3", endpoint_url=table.endpoint)  # type: ignore[attr-defined]
    s3.create_bucket(Bucket="states")
    return ObjectItems(table.client, table.table, S3Blobs(s3, "states"))


def handler(bundle: Path, table: Any, engine: str = "litert", clock: Any = None, **environ: str) -> HandlerClient:
    """A handler on `table` (a DynamoDBItems; anything else: a bundle served without a store)."""
    name = table.table if isinstance(table, DynamoDBItems) else "unused"
    settings = Settings.from_env({"TABLE_NAME": name, "MODEL_BUNDLE": str(bundle)} | environ)
    loaded = ModelBundle.load(bundle, engine)
    client = table.client if isinstance(table, DynamoDBItems) else table
    store = DynamoDBStateStore(client, name, loaded.manifest.name, lifetimes(settings), clock or _now)
    if isinstance(table, ObjectItems):
        store.keep_states_in(table.blobs, always=True)
    return HandlerClient(
        create_lambda_handler(build_service(settings, loaded, store=store, clock=clock or _now), settings)
    )


def _now() -> datetime:
    return datetime.now(UTC)


def test_the_exporter_keeps_the_next_model_beside_the_one_that_answers(bundles):
    root = bundles["root"]
    manifest = Manifest.read(root / "old+next")
    assert manifest.companion is not None and manifest.companion.role == "next"
    assert Manifest.read(root / "old+next" / "next").version == bundles["versions"]["new"].manifest.version
    assert Manifest.read(root / "old+next" / "next").name == manifest.name == "ranker"
    served = handler(root / "old+next", object()).model()
    assert [(m["role"], m["version"]) for m in served.body["models"]] == [
        ("answers", manifest.version),
        ("next", bundles["versions"]["new"].manifest.version),
    ]


@pytest.mark.parametrize(("engine", "objects"), [("litert", False), ("tensorflow", False), ("litert", True)])
def test_both_steps_of_a_rollout_serving_at_once_keep_both_versions_exact(bundles, table, engine, objects):
    """Instances of (old, next = new) and (new, previous = old) serve 8 users from 16 threads, at random, then the
    rollout is rolled back to (old, next = new) alone: every answer is its version run over all the rows the user
    sent, in the order the answers' steps report, and so is each version's saved state; also with every state
    kept as an object in S3, as states too large for an item are."""
    root, versions = bundles["root"], bundles["versions"]
    table = keeping_objects(table) if objects else table
    kinds = {kind: handler(root / kind, table, engine) for kind in ("old+next", "new+previous")}
    rng, lock = np.random.default_rng(7), threading.Lock()
    users = [f"u{i}" for i in range(8)]
    plans = [[(users[(t + i) % 8], rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32)) for i in range(12)]
             for t in range(16)]  # fmt: skip
    done: list[tuple[str, np.ndarray, dict[str, Any]]] = []

    def send(thread: int) -> None:
        chooser = random.Random(thread)
        for index, (user, rows) in enumerate(plans[thread]):
            kind = "old+next" if index >= 8 else chooser.choice(list(kinds))  # the last third: rolled back
            for _ in range(20):  # as the client does: a conflict through every retry is sent again, same key
                reply = kinds[kind].predict(user, rows, key=f"{thread}-{index}")
                if reply.status != 409 or reply.body["error"]["code"] != "state_conflict":
                    break
            assert reply.status == 200, reply.body
            with lock:
                done.append((user, rows, reply.body))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 16 * 12
    items = table
    for user in users:
        check_user(versions, items, sorted((body["steps"], rows, body) for u, rows, body in done if u == user))


def check_user(versions: dict[str, Version], items: DynamoDBItems, done: list[Any]) -> None:
    whole = np.concatenate([rows for _, rows, _ in done])
    assert [steps for steps, _, _ in done] == list(np.cumsum([len(rows) for _, rows, _ in done]))
    runs = {name: version.run(whole) for name, version in versions.items()}
    by_version = {version.manifest.version: name for name, version in versions.items()}
    for steps, rows, body in done:
        answered = by_version[body["model"]["version"]]
        assert body["state"] in ("new", "continued")
        assert_matches(body["outputs"], {n: v[steps - len(rows) : steps] for n, v in runs[answered][0].items()})
        (other,) = body["versions"]
        assert other["state"] in ("new", "continued") and other["steps"] == steps
    item = items.saved(done[-1][2]["user_id"], "ranker")
    blobs = {item["model_version"]["S"]: bytes(item["state"]["B"])}
    blobs |= {version: bytes(fields["M"]["s"]["B"]) for version, fields in item["versions"]["M"].items()}
    for name, version in versions.items():
        saved = version.manifest.unpack_state(blobs[version.manifest.version])
        assert saved is not None
        expected = runs[name][1]
        assert max(float(np.max(np.abs(a - b))) for a, b in zip(saved, expected, strict=True)) <= 1e-5, name


def test_a_version_without_a_state_costs_the_other_version_nothing(bundles, table):
    """A user sent 10 rows to the old version alone and nothing during the warm-up (old, next = new). At step 2
    (new, previous = old) the new version has no state for them: it starts from zero where their stream stands and
    says so (`seen`), while the old version's state stays exact; rolled back to step 1, the old version answers
    from all of the user's rows."""
    root, versions = bundles["root"], bundles["versions"]
    old, new = (versions[name].manifest.version for name in ("old", "new"))
    rows = np.random.default_rng(8).normal(size=(15, 4)).astype(np.float32)
    assert handler(root / "old", table).predict("idle", rows[:10]).status == 200
    reply = handler(root / "new+previous", table).predict("idle", rows[10:12]).body
    assert (reply["state"], reply["steps"], reply["seen"]) == ("reset", 12, 2)
    assert reply["versions"] == [{"version": old, "role": "previous", "state": "continued", "steps": 12}]
    assert_matches(reply["outputs"], versions["new"].run(rows[10:12])[0])
    back = handler(root / "old+next", table).predict("idle", rows[12:]).body  # the rollback
    assert (back["state"], back["steps"], back["seen"]) == ("continued", 15, 15)
    assert back["versions"] == [{"version": new, "role": "next", "state": "continued", "steps": 5}]
    assert_matches(back["outputs"], {name: values[12:] for name, values in versions["old"].run(rows)[0].items()})
    state = {v["version"]: v for v in handler(root / "old+next", table).state("idle").body["versions"]}
    assert (state[old]["steps"], state[old]["complete"], state[new]["steps"], state[new]["complete"]) == (
        15, True, 5, False,
    )  # fmt: skip


def test_plain_bundles_of_two_versions_reset_the_user_at_every_switch(bundles, table):
    """Today's behaviour, kept for a bundle of one model: another version's state is not continued."""
    root = bundles["root"]
    old, new = handler(root / "old", table), handler(root / "new", table)
    origins = [(old if index % 2 else new).predict("plain", [[0.1] * 4]).body["state"] for index in range(6)]
    assert origins == ["new", "reset", "reset", "reset", "reset", "reset"]
    kept = [handler(root / kind, table) for kind in ("old+next", "new+previous")]
    origins = [kept[index % 2].predict("kept", [[0.1] * 4]).body["state"] for index in range(6)]
    assert origins == ["new", "continued", "continued", "continued", "continued", "continued"]


def test_rows_a_single_model_instance_applied_leave_the_next_version_not_warm_never_wrong(bundles, table):
    """(old alone) and (old, next = new) serving at once: the new version misses the rows the former applies. Its
    state is then reported as not complete and warmed again, never used as if it had seen every row."""
    root, versions = bundles["root"], bundles["versions"]
    alone, warming = handler(root / "old", table), handler(root / "old+next", table)
    rows = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    assert warming.predict("mixed", rows[:2]).body["versions"][0]["state"] == "new"
    assert alone.predict("mixed", rows[2:3]).body["state"] == "continued"  # the new version does not see this row
    reply = warming.predict("mixed", rows[3:])
    assert reply.body["state"] == "continued" and reply.body["versions"][0]["state"] == "warmed"
    assert reply.body["versions"][0]["steps"] == 3  # the rows it has seen since it began again
    state = warming.state("mixed").body
    by_version = {v["version"]: v for v in state["versions"]}
    assert by_version[versions["new"].manifest.version] == {
        "version": versions["new"].manifest.version, "steps": 3, "complete": False, "current": True,
    }  # fmt: skip
    assert by_version[versions["old"].manifest.version]["complete"] is True


def test_with_history_rows_the_missed_rows_are_caught_up_exactly(bundles, table):
    """HISTORY_ROWS keeps the last rows: a version that missed some is caught up from them, and stays exact."""
    root, versions = bundles["root"], bundles["versions"]
    alone, warming = handler(root / "old", table, HISTORY_ROWS="8"), handler(root / "old+next", table, HISTORY_ROWS="8")
    rows = np.random.default_rng(4).normal(size=(7, 4)).astype(np.float32)
    warming.predict("history", rows[:2])
    alone.predict("history", rows[2:4])
    reply = warming.predict("history", rows[4:])
    assert reply.body["versions"][0] == {
        "version": versions["new"].manifest.version, "role": "next", "state": "caught_up", "steps": 7,
    }  # fmt: skip
    item = table.saved("history", "ranker")
    saved = versions["new"].manifest.unpack_state(
        bytes(item["versions"]["M"][versions["new"].manifest.version]["M"]["s"]["B"])
    )
    assert saved is not None
    _, expected = versions["new"].run(rows)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(saved, expected, strict=True)) <= 1e-5


def test_a_new_version_without_a_state_replays_the_kept_rows(bundles, table):
    """A plain bundle of the new version meets a user only the old one served: with HISTORY_ROWS it derives the
    state by running over the kept rows (exactly what the model gives on them), and says so."""
    root, versions = bundles["root"], bundles["versions"]
    rows = np.random.default_rng(5).normal(size=(9, 4)).astype(np.float32)
    handler(root / "old", table, HISTORY_ROWS="5").predict("replay", rows[:6])
    reply = handler(root / "new", table, HISTORY_ROWS="5").predict("replay", rows[6:])
    assert reply.status == 200 and reply.body["state"] == "replayed" and reply.body["steps"] == 9
    expected, _ = versions["new"].run(rows[1:])  # the model over the 5 kept rows, then the new ones
    assert_matches(reply.body["outputs"], {name: values[5:] for name, values in expected.items()})
    without = handler(root / "new", table).predict("no-history", rows[:2])
    handler(root / "old", table).predict("no-history", rows[:2])
    assert handler(root / "new", table).predict("no-history", rows[2:3]).body["state"] == "reset"
    assert without.body["state"] == "new"


def test_history_rows_whose_item_could_pass_400_kb_are_refused_at_cold_start(bundles):
    with pytest.raises(ConfigurationError) as raised:
        handler(bundles["root"] / "old+next", object(), HISTORY_ROWS="30000")
    message = str(raised.value)
    assert "HISTORY_ROWS=30000" in message and "rows fit" in message and "\n" not in message


def window_model(seed: int, window: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.layers.Input(shape=(window, 3), name="rows")
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.LSTM(5, name="lstm")(inputs)), name="w")


def test_a_window_mode_version_with_the_same_window_continues_from_the_rows(tmp_path, table):
    """In window mode the state is the user's last rows, whatever the model: a retrained version continues
    from them; another window resets, saying why."""
    for name, seed, window in (("a", 1, 6), ("b", 2, 6), ("c", 3, 4)):
        window_model(seed, window).save(tmp_path / f"{name}.keras")
        export(tmp_path / f"{name}.keras", tmp_path / name, name="w", sequences=2)
    rows = np.random.default_rng(6).normal(size=(8, 3)).astype(np.float32)
    handler(tmp_path / "a", table).predict("rows", rows[:5])
    reply = handler(tmp_path / "b", table).predict("rows", rows[5:])
    assert reply.body["state"] == "continued" and reply.body["real_rows"] == [6, 6, 6]
    retrained = keras.saving.load_model(tmp_path / "b.keras", compile=False)
    manifest = Manifest.read(tmp_path / "b")
    graph = MODES["window"].read(retrained, manifest.window)
    assert_matches(reply.body["outputs"], {n: v[5:] for n, v in graph.reference(retrained, rows).items()})
    assert handler(tmp_path / "c", table).predict("rows", rows[:1]).body["state"] == "reset"


def fixture_item(format_letter: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"format-{format_letter}.json").read_text())


@pytest.fixture(scope="module")
def fixture_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixtures") / "bundle"
    export(FIXTURES / "model.keras", out, sequences=2)
    return out


@pytest.mark.parametrize("format_letter", ["A", "B", "C"])
def test_items_every_past_release_wrote_continue(fixture_bundle, table, format_letter):
    """An item as each past release wrote it (a fixture written by that release's code): the user continues where
    they were (state and steps), and a retry of the last request an old release applied is not applied again."""
    written = fixture_item(format_letter)
    assert Manifest.read(fixture_bundle).version == written["model_version"]
    user = written["users"]["legacy"]
    items = table
    items.put(from_json(json.dumps(user["item"])))
    at = datetime.fromisoformat(written["written_at"]) + timedelta(minutes=5)
    client = handler(fixture_bundle, table, clock=lambda: at)
    sent = np.concatenate([np.asarray(rows, np.float32) for rows in user["rows"]])
    more = np.random.default_rng(9).normal(size=(5, 5)).astype(np.float32)
    reply = client.predict("legacy", more)
    assert reply.status == 200 and reply.body["state"] == "continued" and reply.body["steps"] == len(sent) + 5
    model = keras.saving.load_model(FIXTURES / "model.keras", compile=False)
    model, graph = graph_for(model, MODES["carry"], None)
    expected = graph.reference(model, np.concatenate([sent, more]))
    assert_matches(reply.body["outputs"], {name: values[len(sent) :] for name, values in expected.items()})
    if any(user["keys"]):  # format A had no keys
        again = client.predict("legacy", np.asarray(user["rows"][-1], np.float32), key=user["keys"][-1])
        assert again.status == 409 and again.body["error"]["code"] == "already_applied"
        assert client.state("legacy").body["steps"] == len(sent) + 5


def test_the_newest_reply_a_past_release_recorded_is_replayed_byte_for_byte(fixture_bundle, table):
    """Format C kept the newest keyed response: its retry, arriving after the upgrade, gets the same bytes."""
    written = fixture_item("C")
    user = written["users"]["legacy"]
    table.put(from_json(json.dumps(user["item"])))
    at = datetime.fromisoformat(written["written_at"]) + timedelta(minutes=5)
    client = handler(fixture_bundle, table, clock=lambda: at)
    event = client.event("POST", "/users/legacy/predict", json.dumps({"inputs": user["rows"][-1]}))
    event["headers"]["idempotency-key"] = user["keys"][-1]
    result = client.handler(event, LocalContext("replay"))
    assert result["statusCode"] == 200 and result["body"] == user["responses"][-1]["body"]
    deleted = written["users"]["deleted"]
    table.put(from_json(json.dumps(deleted["item"])))
    assert client.state("deleted").status == 404
    retried = client.predict("deleted", np.asarray(deleted["rows"][0], np.float32), key=deleted["keys"][0])
    assert retried.status == 409 and retried.body["error"]["code"] == "already_applied"


def test_an_item_of_a_newer_format_is_answered_503_and_left_untouched(fixture_bundle, table):
    written = fixture_item("C")
    item = from_json(json.dumps(written["users"]["legacy"]["item"])) | {"format": {"N": "4"}, "futures": {"S": "x"}}
    items = table
    items.put(item)
    client = handler(fixture_bundle, table)
    for reply in (client.predict("legacy", [[0.1] * 5]), client.state("legacy"), client.delete("legacy")):
        assert reply.status == 503 and reply.headers["retry-after"] == "1"
        assert reply.body["error"]["code"] == "item_format_unsupported" and "format 4" in reply.body["error"]["message"]
    assert items.saved("legacy", "stacked") == item
