"""`make bench`: latency, compute, cold start and DynamoDB cost on the demo model, measured in one run.

    python -m tests.benchmarks.bench BUNDLE_DIR
Compares (a) the seed question's approach made to work in Keras 3 (assign the saved h, c into the stateful
layer's variables, `model.predict`, read the state back), (b) the TensorFlow engine, (c) the LiteRT engine.
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
from pathlib import Path
from typing import Any

import boto3
import keras
import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_handler
from carryover.config import Settings
from carryover.engine import Engine, EngineResult, slide
from carryover.manifest import Manifest
from carryover.store.codec import item_bytes, read_units, write_units
from infra.local.dynamodb import EmbeddedDynamoDB
from infra.local.stack import LOCAL_CREDENTIALS
from infra.table import ensure_table
from layers.exporter.export import export
from tests import items
from tests.clients import HandlerClient

TABLE = "bench"
WINDOW_ENGINES = {"LiteRT engine": "litert", "TensorFlow engine": "tensorflow"}
# DynamoDB on-demand prices, us-east-1, as AWS published them on 2024-11-01 (USD per million request units)
PRICES: dict[str, Any] = {"date": "2024-11-01", "region": "us-east-1", "write": 0.625, "read": 0.125}


class SeedApproach:
    """The question's per-request procedure, in Keras 3: state into the stateful layer, predict, read back."""

    name = "seed-approach"

    def __init__(self, model: keras.Model, manifest: Manifest) -> None:
        self._model = model
        self._layers = [model.get_layer(spec.layer) for spec in manifest.states]
        self._names = [spec.name for spec in manifest.outputs]

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
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


def time_bare_store(client: Any, manifest: Manifest, count: int) -> list[float]:
    """Milliseconds for a bare strongly consistent GetItem and a PutItem of an item of the same size, on the same
    store: what a request costs in round trips alone, the yardstick for the warm request."""
    user = f"bare-{time.monotonic_ns()}"
    item = items.key(user, manifest.name) | {"state": {"B": bytes(manifest.state_bytes)}}
    client.put_item(TableName=TABLE, Item=item)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        client.get_item(TableName=TABLE, Key=items.key(user, manifest.name), ConsistentRead=True)
        client.put_item(TableName=TABLE, Item=item)
        samples.append((time.perf_counter() - start) * 1000)
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


def cold_start(bundle: Path, engine: str, endpoint: str, runs: int) -> dict[str, float]:
    """Medians over `runs` fresh processes, each timed from before it starts to its first response."""
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
        result = subprocess.run(
            [sys.executable, "-c", COLD_START, str(time.time()), file.name],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        found = json.loads(result.stdout.strip().splitlines()[-1])
        assert not found["xray"], "the X-Ray SDK was imported with tracing off"
        measured.append(found)
    return {key: statistics.median(m[key] for m in measured) for key in PHASES}


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


def cost_table(handler: HandlerClient, client: Any, manifest: Manifest) -> list[dict[str, int]]:
    """Item size and request units of the demo's requests, with and without keys, as a user keeps streaming."""
    rows_found: list[dict[str, int]] = []
    for keyed in (False, True):
        for rows in (1, 10, 100):
            user, inputs = f"cost-{keyed}-{rows}", rows_for(manifest, rows).tolist()
            for count in range(1, 41):
                before = items.raw_item(client, TABLE, user, manifest.name)
                reply = handler.predict(user, inputs, key=f"request-{count}" if keyed else None)
                assert reply.status == 200, reply.body
                after = items.raw_item(client, TABLE, user, manifest.name)
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
    print("\n| keys | rows per request | after requests | item bytes | RCU | WCU | USD per million requests |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in table:
        usd = row["rcu"] * PRICES["read"] + row["wcu"] * PRICES["write"]
        print(
            f"| {'yes' if row['keys'] else 'no'} | {row['rows']} | {row['after']} | {row['bytes']} | {row['rcu']} "
            f"| {row['wcu']} | {usd:.3f} |"
        )
    print(
        f"prices: DynamoDB on-demand, {PRICES['region']}, as published {PRICES['date']}: "
        f"${PRICES['write']} per million write request units, ${PRICES['read']} per million read request units"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # the bench prints its own figures

    dynamodb = EmbeddedDynamoDB().start()
    client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint)
    ensure_table(client, TABLE)
    litert = ModelBundle.load(args.bundle, "litert")
    tensorflow = ModelBundle.load(args.bundle, "tensorflow")
    manifest = litert.manifest
    model = keras.saving.load_model(args.bundle / manifest.files["tensorflow"], compile=False)
    engines: dict[str, Engine] = {"b": tensorflow.engine, "c": litert.engine}
    if manifest.mode == "carry" and any(getattr(layer, "stateful", False) for layer in model.layers):
        engines = {"a": SeedApproach(model, manifest), **engines}  # the question's way needs a stateful layer
    labels = {"a": "seed approach (assign + predict)", "b": "TensorFlow engine", "c": "LiteRT engine"}

    calls = {"GetItem": 0, "PutItem": 0}
    for operation in calls:
        client.meta.events.register(
            f"before-call.dynamodb.{operation}",
            lambda operation=operation, **_: calls.__setitem__(operation, calls[operation] + 1),
        )

    settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(args.bundle)})
    row = rows_for(manifest, 1).tolist()
    latency: dict[str, dict[str, Any]] = {}
    compute: dict[str, dict[str, float]] = {}
    for key, engine in engines.items():
        handler = HandlerClient(build_handler(settings, ModelBundle(manifest, engine), client))
        count = args.requests if key != "a" else max(30, args.requests // 4)
        before = dict(calls)
        samples = time_requests(handler, row, count)
        per_request = {op: (calls[op] - before[op]) / (count + 3) for op in calls}
        latency[key] = {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "calls": per_request}
        repeats = 30 if key != "a" else 10
        compute[key] = {
            "1": time_engine(engine, manifest, 1, repeats),
            "100": time_engine(engine, manifest, 100, max(5, repeats // 3)),
        }

    bare = percentile(time_bare_store(client, manifest, args.requests), 50)  # same store, same run
    cold = {engine: cold_start(args.bundle, engine, dynamodb.endpoint, runs=3) for engine in ("tensorflow", "litert")}
    costs = cost_table(HandlerClient(build_handler(settings, litert, client)), client, manifest)
    dynamodb.stop()

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"model {manifest.name} "
        f"({manifest.mode} mode); one 1-timestep request per call; local DynamoDB over HTTP\n"
    )
    print("| | p50 ms | p99 ms | engine ms / 1 step | engine ms / 100 steps |")
    print("| --- | --- | --- | --- | --- |")
    for key in engines:
        print(
            f"| ({key}) {labels[key]} | {latency[key]['p50']:.2f} | {latency[key]['p99']:.2f} | "
            f"{compute[key]['1']:.3f} | {compute[key]['100']:.2f} |"
        )
    print(
        f"bare GetItem + PutItem on the same store: p50 {bare:.2f} ms; warm request / bare round trips: "
        f"TensorFlow {latency['b']['p50'] / bare:.2f}x, LiteRT {latency['c']['p50'] / bare:.2f}x"
    )
    slowest = "a" if "a" in engines else "b"
    for other in [key for key in engines if key != slowest]:
        print(
            f"{slowest}/{other}: warm p50 {latency[slowest]['p50'] / latency[other]['p50']:.1f}x, engine per step "
            f"{compute[slowest]['1'] / compute[other]['1']:.1f}x, "
            f"per 100 steps {compute[slowest]['100'] / compute[other]['100']:.1f}x"
        )
    window = window_compute()
    print("\n| window model (W=30, LSTM 128, 20 features), a 10-row request | ms per new timestep |")
    print("| --- | --- |")
    for name, milliseconds in window.items():
        print(f"| {name} | {milliseconds:.3f} |")
    print(
        f"model.predict/LiteRT: {window['model.predict'] / window['LiteRT engine']:.1f}x, "
        f"model.predict/TensorFlow: {window['model.predict'] / window['TensorFlow engine']:.1f}x per new timestep"
    )
    print(
        "\n| cold start, tracing off (fresh process to first response) | imports s | model load s | first request s "
        "| total s | peak RSS MB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, result in cold.items():
        print(
            f"| {name} | {result['imports']:.3f} | {result['model load']:.3f} | {result['first request']:.3f} | "
            f"{result['seconds']:.3f} | {result['rss_mb']:.0f} |"
        )
    print(f"\ncold start ratio LiteRT/TensorFlow: {cold['litert']['seconds'] / cold['tensorflow']['seconds']:.3f}")
    reads, writes = latency["c"]["calls"]["GetItem"], latency["c"]["calls"]["PutItem"]
    print(f"\nDynamoDB calls per request: {reads:.0f} GetItem (strongly consistent) and {writes:.0f} PutItem")
    print_cost_table(costs)


if __name__ == "__main__":
    main()
