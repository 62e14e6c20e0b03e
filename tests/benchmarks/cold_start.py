"""The cold start as Lambda pays it: Python 3.13, the runtime layer's packages where no bytecode can be written,
with and without the bytecode `layers/runtime/Makefile` compiles.

The real layer holds aarch64 wheels, which cannot run here, so a twin of it is built for this machine: the same
pins (`layers/runtime/requirements.txt`), stripped as the Makefile strips, once without bytecode and once compiled
by the Makefile's own compileall command; beside it, what Lambda's runtime provides (boto3, botocore, ...: the
versions in requirements.lock), with bytecode, as the runtime has it. The function's code is copied as
`handler/Makefile` builds the zip (`.py` only). Every probe runs with PYTHONDONTWRITEBYTECODE=1, as on Lambda's
read-only /opt and /var/task, and the run fails if any bytecode appeared in the layer or the function.

    PYTHONPATH=handler:. python -m tests.benchmarks.cold_start BUNDLE [--cache .build/bench] [--runs 5]
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carryover.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
LAYER_MAKEFILE = ROOT / "layers" / "runtime" / "Makefile"
REQUIREMENTS = ROOT / "layers" / "runtime" / "requirements.txt"
LOCK = ROOT / "requirements.lock"
TABLE = "bench"
LAYOUT = "1"  # bump when the twin's layout or build steps change: a new cache key
NO_BYTECODE, BYTECODE = "no bytecode", "bytecode (Makefile's compileall)"
# Kept out of the zip by handler/Makefile: what only the TensorFlow engine runs.
ZIP_EXCLUDED = ("carryover/keras_model", "carryover/engine/tensorflow.py")
# The environment Lambda gives the function (template.yaml's variables, tracing off), beside the bench's own.
LAMBDA_ENV = {
    "ENGINE": "litert",
    "TRACING": "false",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_LAMBDA_FUNCTION_NAME": "carryover-predict",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_FUNCTION_VERSION": "1",
}
MARK = "COLD-START-RESULT "
PROBE = """
import json, os, sys, time
started = float(sys.argv[1])
up = time.time()
from carryover.composition import build_handler  # what app.py imports
from carryover.config import Settings
from carryover.bundle import ModelBundle
from pathlib import Path
imported = time.time()
bundle = ModelBundle.load(Path(os.environ["MODEL_BUNDLE"]), "litert")
loaded = time.time()
handler = build_handler(Settings.from_env(), bundle)  # settings, DynamoDB client, service, Powertools handler
built = time.time()

class Context:
    aws_request_id = "cold-start"
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "1"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:" + function_name
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "cold-start"
    def get_remaining_time_in_millis(self):
        return 29000

result = handler(json.load(open(sys.argv[2])), Context())
answered = time.time()
assert result["statusCode"] == 200, result
cpu = time.process_time()
layer = sys.argv[3]
from_layer = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(layer)]
compiled = sum(1 for m in from_layer if m.__spec__ and m.__spec__.cached and os.path.exists(m.__spec__.cached))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent process
peak_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print("@MARK@" + json.dumps({
    "interpreter": up - started, "imports": imported - up, "model load": loaded - imported,
    "handler build": built - loaded, "first request": answered - built, "seconds": answered - started,
    "cpu seconds": cpu, "rss_mb": peak_kb / 1024, "layer modules": len(from_layer), "layer pycs used": compiled,
    "xray": any(m.startswith("aws_xray_sdk") for m in sys.modules),
}))
""".replace("@MARK@", MARK)


class Unavailable(Exception):
    """The twin cannot be built here; the message is one line saying why."""


def find_python313() -> str | None:
    """python3.13 as the Makefile finds it: $PYTHON313, else the first pyenv 3.13*, else python3.13 on PATH."""
    if os.environ.get("PYTHON313"):
        return os.environ["PYTHON313"]
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))
    if found:
        return found[0]
    on_path = shutil.which("python3.13")
    return str(Path(on_path).resolve()) if on_path else None


def _version(python: str) -> str:
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
    except OSError as error:
        raise Unavailable(f"python3.13 at {python} does not run: {error}") from None
    if done.returncode != 0 or not done.stdout.startswith("3.13."):
        raise Unavailable(f"{python} is not a working Python 3.13 ({done.stdout.strip() or done.stderr.strip()})")
    return done.stdout.strip()


def _makefile_recipe() -> tuple[list[str], list[str]]:
    """From layers/runtime/Makefile: the PROVIDED globs its strip removes, and its compileall arguments."""
    text = LAYER_MAKEFILE.read_text()
    provided = re.search(r"^PROVIDED\s*:?=\s*(.+)$", text, re.MULTILINE)
    compile_args = re.search(r'-m compileall (.+?) "\$\(SITE\)"', text)
    if provided is None or compile_args is None:
        raise Unavailable(f"{LAYER_MAKEFILE}: no PROVIDED list or no compileall command found; update cold_start.py")
    return provided.group(1).split(), shlex.split(compile_args.group(1))


def _provided_pins(globs: list[str]) -> list[str]:
    """The pins in requirements.lock of the packages Lambda's runtime provides (the Makefile's PROVIDED)."""
    pins = []
    for line in LOCK.read_text().splitlines():
        name = line.split("==")[0].strip()
        if "==" in line and any(fnmatch.fnmatch(name.lower().replace("-", "_"), g.lower()) for g in globs):
            pins.append(line.split(";")[0].split("#")[0].strip())
    if not any(p.startswith("boto3==") for p in pins):
        raise Unavailable(f"{LOCK}: no boto3 pin for the runtime-provided packages")
    return pins


def _pip(python: str, *args: str) -> None:
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no message)"]
        raise Unavailable(f"pip install under python3.13 failed: {lines[-1].strip()}")


def _strip(site: Path, provided: list[str]) -> None:
    """The Makefile's strip: `rm -rf $(PROVIDED) bin` in the site, then every __pycache__, tests and *.pyi."""
    for pattern in [*provided, "bin"]:
        for path in site.glob(pattern):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for dirpath, dirnames, filenames in os.walk(site):
        for name in [*dirnames, *filenames]:
            if name in ("__pycache__", "tests") or fnmatch.fnmatch(name, "*.pyi"):
                path = Path(dirpath) / name
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "tests")]


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def _pycs(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.pyc"))


def build_twin(python: str, cache: Path) -> Path:
    """The layer twin under `cache/runtime-layer-313`: `none/python` (no bytecode), `compiled/python` (the
    Makefile's compileall) and `provided` (Lambda runtime's boto3 & co., with bytecode). Rebuilt only when the
    layer's requirements, the provided pins, the Makefile's strip or compile command, or python3.13 change."""
    provided_globs, compile_args = _makefile_recipe()
    pins = _provided_pins(provided_globs)
    key = hashlib.sha256(
        json.dumps([LAYOUT, REQUIREMENTS.read_text(), pins, provided_globs, compile_args, _version(python)]).encode()
    ).hexdigest()
    twin = cache / "runtime-layer-313"
    if (twin / "key").is_file() and (twin / "key").read_text() == key:
        return twin
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="runtime-layer-313.", dir=cache))
    try:
        started = time.perf_counter()
        print(f"cold start: building the runtime layer twin for python3.13 in {twin} (once)", file=sys.stderr)
        site = work / "none" / "python"
        _pip(python, "--no-compile", "--only-binary=:all:", "--target", str(site), "-r", str(REQUIREMENTS))
        _strip(site, provided_globs)
        _pip(python, "--no-deps", "--only-binary=:all:", "--target", str(work / "provided"), *pins)  # compiles
        shutil.copytree(work / "none", work / "compiled", symlinks=True)
        compiled = subprocess.run(
            [python, "-m", "compileall", *compile_args, str(work / "compiled" / "python")],
            capture_output=True,
            text=True,
        )
        if compiled.returncode != 0:
            raise Unavailable(f"compileall failed: {(compiled.stdout + compiled.stderr).strip().splitlines()[-1:]}")
        (work / "key").write_text(key)
        if twin.exists():
            shutil.rmtree(twin)
        work.rename(twin)
        print(
            f"cold start: twin built in {time.perf_counter() - started:.0f} s: layer {_size_mb(twin / 'none'):.1f} MB"
            f" without bytecode, {_size_mb(twin / 'compiled'):.1f} MB with {_pycs(twin / 'compiled')} pyc; "
            f"provided {_size_mb(twin / 'provided'):.1f} MB",
            file=sys.stderr,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return twin


def function_copy(into: Path) -> Path:
    """The function's code as handler/Makefile puts it in the zip: app.py and carryover/, .py files only."""
    source = ROOT / "handler"
    shutil.copy2(source / "app.py", into / "app.py")
    shutil.copytree(source / "carryover", into / "carryover", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for excluded in ZIP_EXCLUDED:
        path = into / excluded
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return into


def _event(bundle: Path, user: str, path: Path) -> None:
    """events/predict.json for `user`, with three rows that fit the bundle's model."""
    spec = Manifest.read(bundle).input
    rows = (
        [[1], [2], [3]] if spec.kind == "tokens" else [[0.1 * (i + j) for j in range(spec.features)] for i in range(3)]
    )
    text = (ROOT / "events" / "predict.json").read_text().replace("/users/alice/", f"/users/{user}/")
    event = json.loads(text)
    event["pathParameters"]["user_id"] = user
    event["body"] = json.dumps({"inputs": rows})
    path.write_text(json.dumps(event))


def _ensure_table(endpoint: str) -> dict[str, str]:
    """The table on the endpoint (the first request writes to it); the credentials the handler signs with."""
    import boto3

    from infra.table import ensure_table
    from tests.dynamodb_server import LOCAL_CREDENTIALS

    credentials = {name: os.environ.get(name) or value for name, value in LOCAL_CREDENTIALS.items()}
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=credentials["AWS_DEFAULT_REGION"],
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    ensure_table(client, TABLE)
    return credentials


def cold_start_313(bundle: Path, endpoint: str, cache: Path, runs: int) -> dict[str, dict[str, float]] | str:
    """Medians over `runs` fresh python3.13 processes per variant (round-robin, after one unmeasured run each),
    timed from before the process starts to its first response: variant -> {"interpreter", "imports", "model
    load", "handler build", "first request", "seconds" (the sum), "cpu seconds", "rss_mb", "layer modules",
    "layer pycs used", "layer_mb"}; or one line saying why it cannot run here (no python3.13, no wheels)."""
    python = find_python313()
    if python is None:
        return (
            "no python3.13 (looked for $PYTHON313, ~/.pyenv/versions/3.13*/bin/python3.13 and python3.13 on PATH): "
            "install it (pyenv install 3.13) to measure the cold start Lambda's python3.13 pays"
        )
    try:
        twin = build_twin(python, cache)
    except Unavailable as error:
        return str(error)
    credentials = _ensure_table(endpoint)
    layers = {NO_BYTECODE: twin / "none" / "python", BYTECODE: twin / "compiled" / "python"}
    before = {name: _pycs(site) for name, site in layers.items()}
    passed = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE"}
    base = {name: value for name, value in os.environ.items() if name in passed}
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in layers}
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        task = Path(scratch) / "task"
        task.mkdir()
        function_copy(task)
        for attempt in range(runs + 1):
            for name, site in layers.items():
                user = f"cold-{time.time_ns()}"
                event = Path(scratch) / "event.json"
                _event(bundle, user, event)
                env = (
                    base
                    | credentials
                    | LAMBDA_ENV
                    | {
                        "TABLE_NAME": TABLE,
                        "MODEL_BUNDLE": str(bundle),
                        "DYNAMODB_ENDPOINT": endpoint,
                        "AWS_REGION": credentials["AWS_DEFAULT_REGION"],
                        "PYTHONPATH": os.pathsep.join([str(task), str(site), str(twin / "provided")]),
                        "PYTHONDONTWRITEBYTECODE": "1",
                    }
                )
                done = subprocess.run(
                    [python, "-s", "-c", PROBE, str(time.time()), str(event), str(site)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=300,
                )
                lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
                if done.returncode != 0 or not lines:
                    raise RuntimeError(f"cold start probe ({name}) failed:\n{done.stderr[-3000:]}")
                found = json.loads(lines[-1][len(MARK) :])
                assert not found.pop("xray"), "the X-Ray SDK was imported with tracing off"
                if attempt:  # the first round fills the page cache; Lambda's disk is warm for its files too
                    measured[name].append(found)
        written = _pycs(task) + sum(_pycs(site) - before[name] for name, site in layers.items())
        if written:
            raise RuntimeError(f"{written} bytecode files were written during the probe: the measure is invalid")
    return {
        name: {key: statistics.median(m[key] for m in runs_of) for key in runs_of[0]}
        | {"layer_mb": _size_mb(layers[name])}
        for name, runs_of in measured.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--cache", type=Path, default=ROOT / ".build" / "bench")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from tests.dynamodb_server import DynamoDBServer

    server = DynamoDBServer().start()
    try:
        found = cold_start_313(args.bundle.resolve(), server.endpoint, args.cache.resolve(), args.runs)
    finally:
        server.stop()
    if isinstance(found, str):
        sys.exit(f"cold start on python3.13 not measured: {found}")
    for name, figures in found.items():
        print(name, json.dumps({key: round(value, 3) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
