"""TorchServe 0.12.0's stateful inference on the bundle's demo model: install check, start/stop, check, measure.

Runs in the project venv. The weights are exported here (Keras, `sys.executable`); the twin is checked and
archived, and TorchServe runs, from the peer venv (`make bench-peer` installs it from requirements-peer.lock).
TorchServe listens on 127.0.0.1 only, on free ports, with token auth, the model API and the metrics API off, no
model snapshot and nothing fetched; its pid file, worker sockets and logs stay in `workdir`.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the repository: tests/benchmarks/peer -> .
MODEL = "seed_lstm"
FEATURES = 8
# The sequence id of the start probe, the check and the one-sequence bench; the users' are SEQUENCE-user-<i>.
# TorchServe keeps each sequence open until idle sequenceMaxIdleMSec (60 s), holding one thread of its dispatcher
# (batchSize + 1 threads): see model-config.yaml for how many the bench needs.
SEQUENCE = "carryover-peer"
USERS = 20  # sequences the multi-user bench continues round-robin; model-config.yaml: batchSize >= USERS + 1
ANSWER_TIMEOUT_S = 30.0  # a request unanswered this long fails the run (TorchServe waits 60 s for a thread)
CHUNKS = (1, 5, 1, 13, 2, 15)  # 37 rows: the Keras reference sent in pieces, so the state must carry over
TOLERANCE = 1e-5
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 90.0  # for `torchserve --stop --foreground`, which waits up to 60 s for the JVM
STOP_GRACE_S = 30.0  # then for the launcher and the workers, before their process group is killed
Kind = Literal["torchserve", "carryover"]


class PeerError(RuntimeError):
    """The peer cannot be set up or gave a wrong answer; the message says where to look."""


def available(venv: Path) -> str | None:
    """None when the peer can run; else one line saying what is missing and how to install it."""
    for tool in ("python", "torchserve", "torch-model-archiver"):
        if not (venv / "bin" / tool).exists():
            return f"TorchServe peer: no {venv / 'bin' / tool}; install the peer venv with `make bench-peer`"
    if shutil.which("java") is None:
        return (
            "TorchServe peer: no `java` on PATH (TorchServe's frontend needs Java 11+); install one "
            "(apt-get install -y openjdk-17-jre-headless), then `make bench-peer`"
        )
    return None


def weights_dir(workdir: Path) -> Path:
    """Where `running` puts the exported weights and the Keras reference (ref_x.npy, ref_y.npy, ...)."""
    return workdir / "weights"


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else ["(no log)"]
    return "\n".join(text[-lines:])


def _run(command: list[str], log: Path, env: dict[str, str], what: str) -> None:
    """Runs a step with its output in `log`; a failure raises with the log's tail."""
    with log.open("wb") as out:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise PeerError(f"{what} failed (exit {done.returncode}); {log}:\n{_tail(log)}")


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (all held open at once so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def _config(workdir: Path, store: Path, tmp: Path) -> tuple[Path, str]:
    """config.properties on free loopback ports; returns it and the model's predictions URL."""
    inference, management, metrics, grpc_inference, grpc_management = _free_ports(5)
    properties = {
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",  # not opened: enable_metrics_api=false
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": grpc_inference,
        "grpc_management_port": grpc_management,
        "enable_metrics_api": "false",
        "disable_system_metrics": "true",
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "install_py_dep_per_model": "false",  # no pip at model load
        "allowed_urls": "file://.*",
        "model_store": store,
        "load_models": f"{MODEL}={MODEL}.mar",
        "default_workers_per_model": 1,
        "number_of_netty_threads": 2,
        "netty_client_threads": 2,
        "job_queue_size": 100,
        "default_response_timeout": 120,
        # java.io.tmpdir: where the frontend puts the workers' Unix sockets (.ts.sock.9000), not the global /tmp
        "vmargs": f"-Xmx1g -XX:+ExitOnOutOfMemoryError -Djava.io.tmpdir={tmp}",
    }
    path = workdir / "config.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path, f"http://127.0.0.1:{inference}/predictions/{MODEL}"


def _peer_env(venv: Path, tmp: Path, logs: Path) -> dict[str, str]:
    """The environment of the peer venv's processes: none of the project's import paths; the pid file
    (tempfile.gettempdir()), worker sockets and logs in `workdir`."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return env | {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
    }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _probe(url: str, timeout_s: float) -> int | None:
    """The status of one 1-row prediction on SEQUENCE, or None when nothing answers yet."""
    try:
        answer = _Sequence(url, "torchserve", SEQUENCE, timeout_s)
        try:
            return answer.post([[0.0] * FEATURES], reset=False)[0]
        finally:
            answer.close()
    except (OSError, http.client.HTTPException):
        return None


@contextmanager
def running(
    venv: Path, bundle: Path, workdir: Path, log: Callable[[str], None] | None = None, quiet_logs: bool = False
) -> Iterator[str]:
    """Exports the bundle's weights, builds the .mar, starts TorchServe and yields its predictions URL once it
    answers; stops it on exit (`torchserve --stop --foreground`, then waits for the process and its workers).
    `log` gets one line per step; `quiet_logs` sets TorchServe's logging to warn (log4j2-quiet.xml) instead of
    its default, which writes DEBUG and access lines for every request."""
    say = log or (lambda line: None)
    venv, bundle, workdir = venv.resolve(), bundle.resolve(), workdir.resolve()
    weights, store, tmp, logs = weights_dir(workdir), workdir / "model_store", workdir / "tmp", workdir / "logs"
    for folder in (weights, store, tmp, logs):
        folder.mkdir(parents=True, exist_ok=True)
    peer_env = _peer_env(venv, tmp, logs)

    started = time.perf_counter()
    project_env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "handler"), str(ROOT)]),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    export = [sys.executable, "-m", "tests.benchmarks.peer.export_weights", str(bundle), str(weights)]
    _run(export, logs / "export.log", project_env, "exporting the Keras weights")
    build = [
        str(venv / "bin/python"),
        "-m",
        "tests.benchmarks.peer.build_mar",
        str(weights),
        str(store),
        "--name",
        MODEL,
    ]
    _run(build, logs / "build_mar.log", peer_env | {"PYTHONPATH": str(ROOT)}, "checking and archiving the twin")
    say(f"TorchServe peer: weights exported, twin checked and archived in {time.perf_counter() - started:.1f} s")

    config, url = _config(workdir, store, tmp)
    torchserve = str(venv / "bin/torchserve")
    console = logs / "console.log"
    start = [torchserve, "--start", "--foreground", "--ncs", "--disable-token-auth"]
    start += ["--model-store", str(store), "--ts-config", str(config)]
    start += ["--log-config", str(HERE / "log4j2-quiet.xml")] if quiet_logs else []
    started = time.perf_counter()
    with console.open("ab") as out:
        # its own session: on a failed stop, the group (launcher, JVM, workers) is ended by its id
        process = subprocess.Popen(
            start, cwd=workdir, env=peer_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = started + START_TIMEOUT_S
        while (status := _probe(url, 30.0)) != 200:
            if process.poll() is not None:
                raise PeerError(
                    f"TorchServe exited ({process.returncode}) before answering; {console}:\n{_tail(console)}"
                )
            if time.perf_counter() > deadline:
                raise PeerError(f"TorchServe did not answer in {START_TIMEOUT_S:.0f} s (last: {status}); see {logs}")
            time.sleep(0.2)
        say(f"TorchServe peer: up at {url}, first prediction {time.perf_counter() - started:.1f} s after start")
        yield url
    finally:
        _stop(process, torchserve, workdir, peer_env, console, say)


def _stop(
    process: subprocess.Popen[bytes], torchserve: str, workdir: Path, env: dict[str, str], console: Path,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """`torchserve --stop --foreground` (SIGTERM to the JVM, waits for it), then waits for the launcher and the
    workers; whatever is left of the process group STOP_GRACE_S later is killed by its id."""
    started = time.perf_counter()
    if process.poll() is None:
        with console.open("ab") as out:
            try:
                subprocess.run(
                    [torchserve, "--stop", "--foreground"], cwd=workdir, env=env, stdout=out,
                    stderr=subprocess.STDOUT, timeout=STOP_TIMEOUT_S, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                pass
    deadline = time.perf_counter() + STOP_GRACE_S
    while (process.poll() is None or _group_alive(process.pid)) and time.perf_counter() < deadline:
        time.sleep(0.1)
    if process.poll() is None or _group_alive(process.pid):
        say(f"TorchServe peer: still running {STOP_GRACE_S:.0f} s after --stop; killing its process group")
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    else:
        say(f"TorchServe peer: stopped in {time.perf_counter() - started:.1f} s (JVM and workers gone)")


class _Sequence:
    """One keep-alive connection (http.client) continuing one sequence on one server; each answer checked."""

    def __init__(self, url: str, kind: Kind, sequence: str, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"not a URL: {url}")
        self.kind, self.sequence, self.timeout_s = kind, sequence, timeout_s
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        base = parts.path.rstrip("/")
        self.path = base if kind == "torchserve" else f"{base}/users/{sequence}/predict"
        self.headers = {"content-type": "application/json"}
        if kind == "torchserve":
            self.headers["ts_request_sequence_id"] = sequence
        self.steps: int | None = None  # unknown until the first answer: the sequence may have been used before
        self.reconnects = 0

    def close(self) -> None:
        self.connection.close()

    def post(self, rows: list[list[float]], reset: bool) -> tuple[int, bytes]:
        """Status and body of one prediction. A connection the server closed while idle is opened again once
        (counted in `reconnects`); a request that then applied twice fails the steps check."""
        body = json.dumps({"inputs": rows, "reset": reset}).encode()
        try:
            self.connection.request("POST", self.path, body=body, headers=self.headers)
            reply = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.reconnects += 1
            self.connection.close()
            self.connection.request("POST", self.path, body=body, headers=self.headers)
            reply = self.connection.getresponse()
        return reply.status, reply.read()

    def predict(self, rows: list[list[float]], reset: bool = False) -> dict[str, Any]:
        """The answer of a 200 that continued the sequence by len(rows) steps (or restarted it, with reset)."""
        try:
            status, data = self.post(rows, reset)
        except TimeoutError:
            raise PeerError(
                f"{self.kind}: no answer in {self.timeout_s:g} s for sequence {self.sequence} (TorchServe: "
                "its sequence dispatcher may have no thread free for it, see model-config.yaml)"
            ) from None
        if status != 200:
            raise PeerError(f"{self.kind}: HTTP {status}: {data[:300]!r}")
        answer: dict[str, Any] = json.loads(data)
        if reset or self.steps is None:
            expected = {"new", "reset"} if reset else {"new", "continued"}
            self.steps = len(rows) if reset else int(answer["steps"])
        else:
            expected = {"continued"}
            self.steps += len(rows)
        if answer.get("steps") != self.steps or answer.get("state") not in expected:
            raise PeerError(f"{self.kind}: expected state {sorted(expected)} at step {self.steps}, got {answer}")
        return answer

    def timed(self, rows: list[list[float]]) -> float:
        """Milliseconds of one checked prediction, as the client sees it."""
        start = time.perf_counter()
        self.predict(rows)
        return (time.perf_counter() - start) * 1000


def check(url: str, reference: Path, kind: Kind = "torchserve", sequence: str = SEQUENCE) -> float:
    """Sends the Keras reference sequence (`reference`: export_weights.py's ref_x.npy, ref_y.npy) in chunks, the
    first with reset, and returns the max abs diff of the outputs; raises PeerError above TOLERANCE."""
    import numpy as np

    x, expected = np.load(reference / "ref_x.npy"), np.load(reference / "ref_y.npy")
    client, outputs, at = _Sequence(url, kind, sequence), [], 0
    try:
        for n in CHUNKS:
            outputs += client.predict(x[at : at + n].tolist(), reset=at == 0)["outputs"]["main_output"]
            at += n
    finally:
        client.close()
    diff = float(np.abs(np.asarray(outputs, dtype=np.float32) - expected).max())
    if not diff <= TOLERANCE:
        raise PeerError(f"{kind} at {url} differs from Keras by {diff:.2e} > {TOLERANCE:.0e}: not benchmarked")
    return diff


@dataclass(frozen=True)
class Load:
    """What one measurement sends each server: `rows`-row requests continuing `users` sequences round-robin
    (request i continues sequence i % users), a keep-alive connection per sequence."""

    users: int
    rows: int

    @property
    def name(self) -> str:
        """Its key in the JSON result."""
        return f"users_{self.users}_rows_{self.rows}"

    @property
    def label(self) -> str:
        """Its short name for people: [1 sequence, 1 row], [20 users, 10 rows]."""
        who = "1 sequence" if self.users == 1 else f"{self.users} users"
        return f"[{who}, {self.rows} {'row' if self.rows == 1 else 'rows'}]"

    def sequences(self) -> list[str]:
        """One sequence: the check's; many: a user id each."""
        return [SEQUENCE] if self.users == 1 else [f"{SEQUENCE}-user-{index}" for index in range(self.users)]

    def describe(self) -> str:
        """What one timed request is, for people."""
        request = f"a {self.rows}-row request continuing "
        if self.users == 1:
            return request + "one sequence"
        return request + f"one of {self.users} users' sequences, round-robin, a connection each"


LOADS = (Load(1, 1), Load(USERS, 1), Load(USERS, 10))


def _figures(samples: list[float], clients: list[_Sequence]) -> dict[str, Any]:
    """p50, p99, mean and max ms; the steps the sequences reached, added up, and the reconnects."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")  # linear, as numpy.percentile
    return {
        "p50_ms": round(cuts[49], 3),
        "p99_ms": round(cuts[98], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "max_ms": round(max(samples), 3),
        "steps": sum(client.steps or 0 for client in clients),
        "reconnects": sum(client.reconnects for client in clients),
    }


def side_by_side(
    torchserve_url: str, carryover_url: str, load: Load, requests: int, warmup: int, seed: int = 0
) -> dict[str, Any]:
    """`load` on each server, alternating request by request (so both meet the same load) with the same rows;
    each request must answer 200 with its sequence `load.rows` steps further. Returns p50/p99 ms per server and
    carryover's over TorchServe's."""
    if requests < 2:
        raise ValueError("requests must be at least 2")
    rng = random.Random(seed)
    urls: dict[Kind, str] = {"torchserve": torchserve_url, "carryover": carryover_url}
    clients = {kind: [_Sequence(url, kind, sequence) for sequence in load.sequences()] for kind, url in urls.items()}
    samples: dict[str, list[float]] = {kind: [] for kind in clients}
    try:
        for index in range(warmup + requests):
            rows = [[round(rng.gauss(0, 1), 6) for _ in range(FEATURES)] for _ in range(load.rows)]
            for kind, users in clients.items():
                elapsed = users[index % load.users].timed(rows)
                if index >= warmup:
                    samples[kind].append(elapsed)
    finally:
        for client in (client for users in clients.values() for client in users):
            client.close()
    result: dict[str, Any] = {"users": load.users, "rows": load.rows}
    result |= {kind: _figures(samples[kind], users) for kind, users in clients.items()}
    for q in ("p50", "p99"):
        result[f"carryover_over_torchserve_{q}"] = round(
            result["carryover"][f"{q}_ms"] / result["torchserve"][f"{q}_ms"], 2
        )
    return result
