"""`make bench`: latency, compute, cold start and cost on a bundle (the demo by default), measured in one run.

    python -m tests.benchmarks BUNDLE_DIR [--requests N] [--users N]
The Lambda path compares (a) the seed question's approach made to work in Keras 3 (assign the saved h, c into
the stateful layer's variables, `model.predict`, read the state back), (b) the TensorFlow engine, (c) the LiteRT
engine; then the local API as `make run` serves it, its store with many users, the cold start (also as Lambda
pays it, with and without bytecode), window mode, and what DynamoDB bills per request.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import keras
import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_handler
from carryover.config import Settings
from carryover.engine import Batched, Engine, EngineResult, slide
from carryover.manifest import Manifest
from carryover.store.codec import item_bytes, read_units, write_units
from infra.local.signals import exit_on_stop
from infra.table import ensure_table
from layers.exporter.export import export
from tests.benchmarks import local_api as local
from tests.benchmarks import report, stream
from tests.benchmarks.cold_start import cold_start_313
from tests.benchmarks.deploy import IDLE, USERS, simulate
from tests.benchmarks.history import history_figures
from tests.benchmarks.objects import state_objects
from tests.benchmarks.peer.torchserve import available
from tests.benchmarks.round_trips import round_trips
from tests.benchmarks.startup import BYTES_PER_USER, startup_with_users
from tests.clients import HandlerClient
from tests.dynamodb_server import LOCAL_CREDENTIALS, DynamoDBProcess
from tests.stores import DynamoDBItems

TABLE = "bench"
LABELS = {"a": "the question's approach (assign + predict)", "b": "TensorFlow engine", "c": "LiteRT engine"}
DURABLE = {"process": "survives the server being killed", "machine": "survives an OS crash: an fsync per commit"}
ROOT = Path(__file__).resolve().parents[2]
PEER_VENV = ROOT / ".venv-peer"
BENCH_CACHE = ROOT / ".build" / "bench"
WINDOW_ENGINES = {"LiteRT engine": "litert", "TensorFlow engine": "tensorflow"}
# DynamoDB on-demand prices, us-east-1, as AWS published them on 2024-11-01 (USD per million request units)
PRICES: dict[str, Any] = {"date": "2024-11-01", "region": "us-east-1", "write": 0.625, "read": 0.125}


class SeedApproach(Batched):
    """The question's per-request procedure, in Keras 3: state into the stateful layer, predict, read back; one
    sequence at a time (the stateful layer holds one user's state)."""

    name = "seed-approach"

    def __init__(self, model: keras.Model, manifest: Manifest) -> None:
        self._model = model
        self._layers = [model.get_layer(spec.layer) for spec in manifest.states]
        self._names = [spec.name for spec in manifest.outputs]

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        return [self._one(rows, state) for rows, state in zip(inputs, states, strict=True)]

    def _one(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        values = iter(state)
        for layer in self._layers:
            for variable in layer.states:
                variable.assign(next(values)[np.newaxis])
        results = self._model.predict(inputs[np.newaxis], verbose=0)
        new_state = [np.asarray(v)[0] for layer in self._layers for v in layer.states]
        return EngineResult({n: r[0] for n, r in zip(self._names, results, strict=False)}, new_state)


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def time_requests(client: HandlerClient, rows: list[list[float]], count: int) -> list[float]:
    """Milliseconds per warm request, over `count` requests for one user after three warm-ups."""
    user = f"bench-{time.monotonic_ns()}"
    for _ in range(3):
        client.predict(user, rows)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        reply = client.predict(user, rows)
        samples.append((time.perf_counter() - start) * 1000)
        assert reply.status == 200, reply.body
    return samples


def rows_for(manifest: Manifest, count: int, seed: int = 0) -> np.ndarray:
    """`count` valid rows for the model: token ids for a token model, features otherwise."""
    rng = np.random.default_rng(seed)
    if manifest.input.vocabulary is not None:
        return rng.integers(0, manifest.input.vocabulary, size=(count, 1)).astype(np.float32)
    return rng.normal(size=(count, manifest.input.features)).astype(np.float32)


def time_engine(engine: Engine, manifest: Manifest, timesteps: int, repeats: int) -> float:
    """Median milliseconds for one engine call on `timesteps` rows."""
    inputs = rows_for(manifest, timesteps)
    state = manifest.zero_state()
    engine.run(inputs, state)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run(inputs, state)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


COLD_START = """
import json, sys, time
started = float(sys.argv[1])
from carryover.composition import build_handler  # what app.py imports
from carryover.config import Settings
imported = time.time()
handler = build_handler(Settings.from_env())  # what app.py does at cold start: the model load
loaded = time.time()
from infra.local.server import LocalContext
result = handler(json.load(open(sys.argv[2])), LocalContext("cold"))
answered = time.time()
assert result["statusCode"] == 200, result
xray = any(m.startswith("aws_xray_sdk") for m in sys.modules)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent process
peak_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print(json.dumps({"imports": imported - started, "model load": loaded - imported, "first request": answered - loaded,
                  "seconds": answered - started, "rss_mb": peak_kb / 1024, "xray": xray}))
"""
PHASES = ("imports", "model load", "first request", "seconds", "rss_mb")
RESTORED = """
import json, sys, time
import snapshot_restore_py as hooks
import app  # the init SnapStart snapshots: configuration, the model loaded
for hook, args, kwargs in hooks.get_before_snapshot():
    hook(*args, **kwargs)
started = time.time()  # the snapshot restored: what Lambda runs from here
for hook, args, kwargs in hooks.get_after_restore():
    hook(*args, **kwargs)
renewed = time.time()
from infra.local.server import LocalContext
result = app.lambda_handler(json.load(open(sys.argv[1])), LocalContext("restored"))
answered = time.time()
assert result["statusCode"] == 200, result
print(json.dumps({"after restore": renewed - started, "first request": answered - renewed,
                  "seconds": answered - started}))
"""


def cold_start(bundle: Path, engine: str, endpoint: str, runs: int, script: str = COLD_START) -> dict[str, float]:
    """Medians over `runs` fresh processes, each timed from before it starts to its first response (`script`:
    RESTORED times a SnapStart restore instead: its hooks and the first request after them)."""
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {
        "TABLE_NAME": TABLE,
        "MODEL_BUNDLE": str(bundle),
        "ENGINE": engine,
        "DYNAMODB_ENDPOINT": endpoint,
        "PYTHONPATH": f"{root / 'handler'}{os.pathsep}{root}",
        "TRACING": "false",
    }
    event = json.loads((root / "events" / "predict.json").read_text())  # with rows that fit the bundle's model
    event["body"] = json.dumps({"inputs": rows_for(Manifest.read(bundle), 3).tolist()})
    measured = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(event, file)
    for _ in range(runs):
        arguments = [str(time.time()), file.name] if script == COLD_START else [file.name]
        result = subprocess.run(
            [sys.executable, "-c", script, *arguments],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        found = json.loads(result.stdout.strip().splitlines()[-1])
        assert not found.get("xray"), "the X-Ray SDK was imported with tracing off"
        measured.append(found)
    return {key: statistics.median(m[key] for m in measured) for key in measured[0] if key != "xray"}


def window_compute(rows: int = 10, repeats: int = 30) -> dict[str, float]:
    """Compute per new timestep for a window model, W=30, LSTM(128), F=20: each engine on a `rows`-row
    request, against `model.predict` on the same `rows` windows in one batch."""
    with tempfile.TemporaryDirectory() as work:
        keras.utils.set_random_seed(0)
        inputs = keras.layers.Input(shape=(30, 20))
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LSTM(128)(inputs)), name="window-bench")
        model.save(Path(work) / "window.keras")
        export(Path(work) / "window.keras", Path(work) / "bundle", sequences=3)
        bundles = {label: ModelBundle.load(Path(work) / "bundle", engine) for label, engine in WINDOW_ENGINES.items()}
    manifest = bundles["LiteRT engine"].manifest
    found = {label: time_engine(bundle.engine, manifest, rows, repeats) / rows for label, bundle in bundles.items()}
    windows, _ = slide(manifest.zero_state()[0], rows_for(manifest, rows), 30)
    model.predict(windows, verbose=0)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(windows, verbose=0)
        samples.append((time.perf_counter() - start) * 1000)
    return found | {"model.predict": statistics.median(samples) / rows}


def window_model(window: int) -> keras.Model:
    """A window model whose export is among the slowest: Conv1D -> Bidirectional(LSTM 64) -> GRU 64 -> Dense, 8
    features, three recurrent layers unrolled over the window for LiteRT."""
    keras.utils.set_random_seed(0)
    inputs = keras.layers.Input(shape=(window, 8))
    features = keras.layers.Conv1D(16, 3, padding="same")(inputs)
    both = keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True))(features)
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(64)(both)), name=f"window-{window}")


def export_time(window: int) -> tuple[float, dict[str, float]]:
    """Seconds `make model` takes to export `window_model(window)` (50 verified sequences, as by default): in all,
    and in each of its steps."""
    marks: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as work:
        window_model(window).save(Path(work) / "window.keras")
        started = time.perf_counter()
        export(
            Path(work) / "window.keras", Path(work) / "bundle", on_step=lambda n: marks.append((n, time.perf_counter()))
        )
        ended = time.perf_counter()
    ends = [at for _, at in marks[1:]] + [ended]
    return ended - started, {name: end - at for (name, at), end in zip(marks, ends, strict=True)}


def cost_table(handler: HandlerClient, client: Any, manifest: Manifest) -> list[dict[str, int]]:
    """Item size and request units of the demo's requests, with and without keys, as a user keeps streaming."""
    rows_found: list[dict[str, int]] = []
    for keyed in (False, True):
        for rows in (1, 10, 100):
            user, inputs = f"cost-{keyed}-{rows}", rows_for(manifest, rows).tolist()
            for count in range(1, 41):
                before = DynamoDBItems(client, TABLE).get(user, manifest.name)
                reply = handler.predict(user, inputs, key=f"request-{count}" if keyed else None)
                assert reply.status == 200, reply.body
                after = DynamoDBItems(client, TABLE).get(user, manifest.name)
                assert after is not None
                if count in (1, 10, 40):
                    rows_found.append(
                        {
                            "keys": int(keyed),
                            "rows": rows,
                            "after": count,
                            "bytes": item_bytes(after),
                            "rcu": read_units(before),
                            "wcu": write_units(before, after),
                        }
                    )
    return rows_found


def print_cost_table(table: list[dict[str, int]]) -> None:
    report.table(
        ["keys", "rows per request", "after requests", "item bytes", "RCU", "WCU", "USD per million requests"],
        [
            [
                "yes" if row["keys"] else "no", row["rows"], row["after"], f"{row['bytes']:,}", row["rcu"], row["wcu"],
                f"{row['rcu'] * PRICES['read'] + row['wcu'] * PRICES['write']:.3f}",
            ]
            for row in table
        ],
    )  # fmt: skip
    report.note(
        f"prices: DynamoDB on-demand, {PRICES['region']}, as published {PRICES['date']}: ${PRICES['write']} per "
        f"million write request units, ${PRICES['read']} per million read request units; a write is billed per "
        "started KiB of the larger of the old and new item, a strongly consistent read per started 4 KiB"
    )


def lambda_path(args: argparse.Namespace, client: Any, manifest: Manifest, endpoint: str) -> float:
    """The Lambda handler's warm requests against a DynamoDB over HTTP, per engine; engine compute alone. Returns
    the LiteRT request's p50 (ms)."""
    litert, tensorflow = (ModelBundle.load(args.bundle, engine) for engine in ("litert", "tensorflow"))
    model = keras.saving.load_model(args.bundle / manifest.files["tensorflow"], compile=False)
    engines: dict[str, Engine] = {"b": tensorflow.engine, "c": litert.engine}
    if manifest.mode == "carry" and any(getattr(layer, "stateful", False) for layer in model.layers):
        engines = {"a": SeedApproach(model, manifest), **engines}  # the question's way needs a stateful layer
    settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(args.bundle)})
    row = rows_for(manifest, 1).tolist()
    latency: dict[str, dict[str, Any]] = {}
    compute: dict[str, dict[str, float]] = {}
    for key, engine in engines.items():
        report.step(f"({key}) {LABELS[key]}: warm requests through the handler, then the engine alone")
        handler = HandlerClient(build_handler(settings, ModelBundle(manifest, engine), client))
        count = args.requests if key != "a" else max(30, args.requests // 4)
        samples = time_requests(handler, row, count)
        latency[key] = {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}
        repeats = 30 if key != "a" else 10
        compute[key] = {
            "1": time_engine(engine, manifest, 1, repeats),
            "100": time_engine(engine, manifest, 100, max(5, repeats // 3)),
        }
    report.table(
        ["", "p50 ms", "p99 ms", "engine ms / 1 step", "engine ms / 100 steps"],
        [
            [f"({key}) {LABELS[key]}", f"{latency[key]['p50']:.2f}", f"{latency[key]['p99']:.2f}",
             f"{compute[key]['1']:.3f}", f"{compute[key]['100']:.2f}"]
            for key in engines
        ],
    )  # fmt: skip
    report.note(
        "p50/p99: a warm 1-timestep request through the Lambda handler for one user continuing on one instance (its "
        "item cached: run, conditional write to DynamoDB over HTTP); engine: the model alone on 1 or 100 timesteps "
        "from a saved state"
    )
    slowest = "a" if "a" in engines else "b"
    for other in [key for key in engines if key != slowest]:
        report.figure(
            f"({slowest})/({other}) warm p50", f"{latency[slowest]['p50'] / latency[other]['p50']:.1f}x",
            f"engine per step {compute[slowest]['1'] / compute[other]['1']:.1f}x, "
            f"per 100 steps {compute[slowest]['100'] / compute[other]['100']:.1f}x",
        )  # fmt: skip
    report.step("DynamoDB round trips per request, and the warm request against the one it cannot avoid")
    round_trips(settings.model_copy(update={"dynamodb_endpoint": endpoint}), litert, row, args.requests)
    report.step("item size and request units as a user keeps streaming, with and without keys")
    print_cost_table(cost_table(HandlerClient(build_handler(settings, litert, client)), client, manifest))
    p50: float = latency["c"]["p50"]
    return p50


def local_api(args: argparse.Namespace, manifest: Manifest) -> None:
    """`make run`'s server as a user meets it, against its store's bare round trip, and the peer if installed."""
    body, figures = local.rows_body(manifest, 1), {}
    for durability in ("process", "machine"):
        report.step(f"{args.requests} 1-row requests to make run's server, LOCAL_DURABILITY={durability}")
        with local.local_server(args.bundle, durability) as url:
            figures[durability] = local.stream_latency(url, body, args.requests, "bench")
            if durability == "machine":
                report.step("8 clients at once, a user each, LOCAL_DURABILITY=machine")
                crowd, throughput = local.concurrent_latency(url, body, 8, max(25, args.requests // 8))
        bare = local.bare_round_trip(manifest.state_bytes + 1300, durability, args.requests)
        report.figure(
            f"local API p50, {durability}", f"{percentile(figures[durability], 50):.2f} ms",
            f"p99 {percentile(figures[durability], 99):.2f} ms; a 1-row request over HTTP (keep-alive), answered "
            f"after its write is committed ({DURABLE[durability]})",
        )  # fmt: skip
        report.figure(
            f"bare SQLite round trip, {durability}", f"{percentile(bare, 50):.2f} ms",
            f"a read and a conditional write transaction of an item of the same size; the request is "
            f"{percentile(figures[durability], 50) / percentile(bare, 50):.1f}x that",
        )  # fmt: skip
    report.figure(
        "8 clients at once, machine", f"p50 {percentile(crowd, 50):.2f} ms, {throughput:.0f} requests/s",
        "their commits are grouped: each waits for one fsync shared with the others, not for theirs in turn",
    )  # fmt: skip
    problem = available(PEER_VENV)
    if problem:
        report.note(f"TorchServe side by side: not measured here ({problem})")
        return
    report.step("TorchServe 0.12.0's stateful inference on the same model, side by side (make bench-peer)")
    subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.peer", str(args.bundle), "--venv", str(PEER_VENV)], check=True
    )


def cold_starts(args: argparse.Namespace, endpoint: str) -> None:
    report.step("fresh processes of the dev venv's Python to their first response, per engine")
    cold = {engine: cold_start(args.bundle, engine, endpoint, runs=3) for engine in ("tensorflow", "litert")}
    rows = [
        [name, *(f"{result[phase]:.3f}" for phase in PHASES[:-1]), f"{result['rss_mb']:.0f}"]
        for name, result in cold.items()
    ]
    report.table(["tracing off", "imports s", "model load s", "first request s", "total s", "peak RSS MB"], rows)
    report.figure(
        "cold start LiteRT/TensorFlow", f"{cold['litert']['seconds'] / cold['tensorflow']['seconds']:.3f}",
        "the zip deployment's engine against the reference engine, same machine",
    )  # fmt: skip
    report.step("SnapStart: the init snapshotted (model run once), then the restore hooks and the first request")
    restored = cold_start(args.bundle, "litert", endpoint, runs=3, script=RESTORED)
    report.figure(
        "after a restore, to the first response", f"{restored['seconds']:.3f} s",
        f"hooks {restored['after restore']:.3f} s (new clients, cache emptied), first request "
        f"{restored['first request']:.3f} s; a cold start without SnapStart: {cold['litert']['seconds']:.3f} s, its "
        f"first request {cold['litert']['first request']:.3f} s; Lambda's own resume of the snapshot not included",
    )  # fmt: skip
    report.step("as Lambda pays it: Python 3.13, the runtime layer on a read-only path, with and without bytecode")
    found = cold_start_313(args.bundle.resolve(), endpoint, BENCH_CACHE.resolve(), 5)
    if isinstance(found, str):
        report.note(f"Python 3.13 cold start: not measured ({found})")
        return
    columns = ["interpreter", "imports", "model load", "handler build", "first request", "seconds", "cpu seconds"]
    report.table(
        ["runtime layer", *(f"{name} s" for name in columns), "peak RSS MB"],
        [
            [variant, *(f"{values[name]:.3f}" for name in columns), f"{values['rss_mb']:.0f}"]
            for variant, values in found.items()
        ],
    )
    without, with_ = (found[variant]["seconds"] for variant in found)
    report.figure(
        "bytecode / none", f"{with_ / without:.2f}", "a cold start with the layer's bytecode, over one that compiles"
    )


def many_users(args: argparse.Namespace) -> None:
    report.step(f"the local store with {args.users:,} users (built once, cached in {BENCH_CACHE})")
    found = startup_with_users(args.users, cache=BENCH_CACHE, bundle=args.bundle)
    report.figure(
        f"store open, {args.users:,} users", f"{found['users: open'] * 1000:.1f} ms",
        f"first read {found['users: first load'] * 1000:.1f} ms, first write {found['users: first save'] * 1000:.1f} "
        f"ms; empty: open {found['empty: open'] * 1000:.1f} ms ({found['db_mb']:,.0f} MB on disk)",
    )  # fmt: skip
    report.figure(
        f"make run's server start, {args.users:,} users", f"{found['users: server start']:.2f} s",
        f"to its banner; empty {found['empty: server start']:.2f} s: the users cost nothing at start-up",
    )  # fmt: skip


def shipping(args: argparse.Namespace, client: Any) -> None:
    phases = simulate(args.bundle, client, "bench-deploy", rounds=4, say=report.step)
    report.table(
        ["phase", "requests", "answering state reset", "of users the warm-up saw", "answers from an incomplete state",
         "other version's state lost", "lost or doubled steps", "WCU p50 / max"],
        [
            [p.name, p.requests, p.resets, p.resets_of_warmed, p.incomplete, p.other_lost, p.lost_or_doubled,
             f"{statistics.median(p.units):.0f} / {max(p.units)}"]
            for p in phases
        ],
    )  # fmt: skip
    report.note(
        f"{USERS} users send in every phase, {IDLE} only before and after the warm-up: the new version meets those "
        "without a state and starts from zero where their stream stands (its answers say how many rows it has seen); "
        "the other version's state is kept exact"
    )
    before = statistics.median(phases[0].units)
    during = max(statistics.median(p.units) for p in phases[1:-1])
    report.figure(
        "WCU during / before", f"{during / before:.2f}",
        f"{USERS} users, 1-row requests: a bundle keeping two versions writes both states in the one item",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per measurement")
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the local store's start-up measure")
    args = parser.parse_args()
    exit_on_stop()  # SIGTERM too unwinds to the `finally` that stops the DynamoDB server's process
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # the bench prints its own figures
    manifest = Manifest.read(args.bundle)
    report.heading(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; model "
        f"{manifest.name} ({manifest.mode} mode). Figures move by about 20% between runs: compare within one run."
    )
    kept = "there already: reused" if any(BENCH_CACHE.glob("*.sqlite3")) else "built once, kept for the next run"
    report.heading(
        f"writes: {BENCH_CACHE} (a local store of {args.users:,} users for the start-up measure, about "
        f"{args.users * BYTES_PER_USER / 1e9:.1f} GB, {kept}; --users N for fewer, delete the folder to reclaim "
        "it), and temporary files it removes at the end"
    )
    dynamodb = DynamoDBProcess().start()  # the store in a process of its own, as DynamoDB is remote
    client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint)
    ensure_table(client, TABLE)
    try:
        report.section("The Lambda path", "the handler, each engine, and DynamoDB (moto's server over HTTP)")
        http_ms = lambda_path(args, client, manifest, dynamodb.endpoint)
        report.section("The stream path", "Kinesis batches through the stream function, against the HTTP path")
        settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(args.bundle)})
        kinesis = boto3.client("kinesis", endpoint_url=dynamodb.endpoint)
        stream.stream_path(settings, ModelBundle.load(args.bundle, "litert"), client, kinesis, http_ms)
        report.section("The local API", "make run as a user meets it: its own process, HTTP, state in SQLite")
        local_api(args, manifest)
        many_users(args)
        report.section("Cold start", "a fresh process to its first answered request, tracing off")
        cold_starts(args, dynamodb.endpoint)
        report.section("Shipping a retrained model", "the README's runbook, simulated on a DynamoDB over HTTP")
        shipping(args, client)
        report.section("The row log and the bootstrap", "what the log adds to a request; a version for every user")
        ensure_table(client, "bench-history")
        s3, changes = (boto3.client(name, endpoint_url=dynamodb.endpoint) for name in ("s3", "dynamodbstreams"))
        history_figures(args.bundle, client, s3, changes, "bench-history")
        report.section("States as objects", "a frame model's state in S3 against the same state in the item")
        state_objects(client, s3, args.requests // 2, time_requests)
        report.section("Window mode", "a model trained on windows of 30 rows (LSTM 128, 20 features)")
        report.step("exporting it, then each engine and model.predict on a 10-row request")
        window = window_compute()
        for name, milliseconds in window.items():
            report.figure(f"{name}, per new timestep", f"{milliseconds:.3f} ms", "compute alone, a batch of 10 windows")
        report.figure(
            "model.predict / LiteRT", f"{window['model.predict'] / window['LiteRT engine']:.1f}x",
            f"model.predict / TensorFlow engine {window['model.predict'] / window['TensorFlow engine']:.1f}x",
        )  # fmt: skip
        report.step("exporting Conv1D -> Bidirectional(LSTM 64) -> GRU 64 on windows of 8, 128 and 1,000 rows")
        for size in (8, 128, 1000):
            total, steps = export_time(size)
            slowest = max(steps, key=steps.__getitem__)
            report.figure(
                f"make model, W={size}", f"{total:.1f} s",
                f"50 verified sequences; its longest step: {slowest} {steps[slowest]:.1f} s",
            )  # fmt: skip
    finally:
        dynamodb.stop()
