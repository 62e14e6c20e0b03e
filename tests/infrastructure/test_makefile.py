"""`make run` and `make model` as a user types them: checks before any slow step, and a bundle rebuilt only
when the model, how it is served, or the exporter changed; STREAM=1 without Node.js is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from infra.table import TEMPLATE
from tests.legacy_files import write_function_savedmodel

ROOT = TEMPLATE.parent


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_a_busy_port_stops_make_run_before_anything_slow(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = make("run", f"PORT={port}", f"BUILD={tmp_path}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == (
        f"cannot start: port {port} is in use: stop what listens there, or choose another with PORT=..."
    )
    assert not any(tmp_path.iterdir())  # nothing was trained or exported


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
def test_a_port_that_is_no_port_stops_make_run_in_one_line(tmp_path, port):
    result = make("run", f"PORT={port}", f"BUILD={tmp_path}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == (
        f"cannot start: PORT={port}: give a port number from 0 to 65535 (0: any free one)"
    )
    assert not any(tmp_path.iterdir())


def test_a_weights_only_h5_stops_make_run_in_one_line_before_anything_slow(tmp_path):
    import h5py

    weights = tmp_path / "weights.h5"
    with h5py.File(weights, "w") as file:  # what save_weights writes: weights, no model config
        file.create_group("lstm").create_dataset("kernel", data=[1.0, 2.0])
    result = make("run", f"MODEL={weights}", "PORT=0", f"BUILD={tmp_path / 'build'}")  # said by preflight.py
    assert result.returncode != 0 and not (tmp_path / "build").exists()
    assert result.stderr.strip().splitlines()[0] == (
        f"cannot start: MODEL={weights}: an HDF5 file without a model config (weights only?): save the whole model"
    )


def test_a_missing_model_stops_make_run_in_one_line(tmp_path):
    result = make("run", "MODEL=nope.keras", "PORT=0", f"BUILD={tmp_path}")
    assert result.returncode != 0 and "MODEL=nope.keras: no such file" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_savedmodel_directory_is_a_model_path(tmp_path):
    folder = write_function_savedmodel(tmp_path / "exported")
    assert make("preflight", f"MODEL={folder}", "PORT=0").returncode == 0
    planned = make("-n", "model", f"MODEL={folder}", f"BUNDLE={tmp_path / 'bundle'}", f"BUILD={tmp_path}")
    assert planned.returncode == 0 and f"layers.exporter {folder} " in planned.stdout, planned.stderr


def test_a_model_of_two_inputs_stops_make_run_before_anything_slow(tmp_path, served):
    import keras

    first, second = keras.Input((None, 3), name="a"), keras.Input((None, 2), name="b")
    joined = keras.layers.Concatenate()([first, second])
    model = keras.Model([first, second], keras.layers.LSTM(4)(joined))
    model.save(tmp_path / "two.keras")
    build = tmp_path / "build"
    result = make("run", f"MODEL={tmp_path / 'two.keras'}", "PORT=0", f"BUILD={build}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == (
        f"cannot start: MODEL={tmp_path / 'two.keras'}: the model has 2 inputs; carryover serves models with one input"
    )
    assert not build.exists()  # refused from its config: nothing loaded, trained or exported
    one = subprocess.run(
        ["python3", "infra/local/preflight.py", "0", str(served["classifier"].path / "model.keras")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert one.returncode == 0 and one.stderr == ""  # a model of one input passes


def test_the_bundle_is_rebuilt_only_when_something_it_comes_from_changed(tmp_path, served):
    model = tmp_path / "model.keras"
    shutil.copyfile(served["classifier"].path / "model.keras", model)
    common = (f"MODEL={model}", f"BUNDLE={tmp_path / 'bundle'}", f"BUILD={tmp_path}", "SEQUENCES=2")

    def exported(*extra: str) -> bool:
        result = make("model", *common, *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        if "exporting" not in result.stdout:
            return False
        assert "over 2 chunked sequences" in result.stdout  # SEQUENCES reaches the exporter
        return True

    assert exported()
    assert not exported()  # nothing changed: nothing to do
    assert exported("MODE=carry") and not exported("MODE=carry")  # served another way: another bundle
    assert exported()
    os.utime(model)  # the model file changed
    assert exported()
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["mode"] == "window"


def test_each_model_source_is_exported_once_and_switching_back_is_instant(tmp_path, served):
    """Bundles are kept per model source under BUILD/bundles/, BUILD/bundle pointing at the one made or found last;
    a model that fails to export costs the others nothing."""
    first, second, junk = tmp_path / "first.keras", tmp_path / "second.keras", tmp_path / "junk.keras"
    shutil.copyfile(served["classifier"].path / "model.keras", first)
    shutil.copyfile(served["classifier"].path / "model.keras", second)
    junk.write_text("not a model")

    def exported(model: Path) -> bool:
        result = make("model", f"MODEL={model}", f"BUILD={tmp_path / 'build'}", "SEQUENCES=2")
        assert result.returncode == 0, result.stderr[-2000:]
        return "exporting" in result.stdout

    assert exported(first) and exported(second)
    assert not exported(first)  # back to a model already exported: nothing to do
    served_now = (tmp_path / "build" / "bundle").resolve()
    assert str(first) in served_now.with_name(f"{served_now.name}.source").read_text()
    assert make("model", f"MODEL={junk}", f"BUILD={tmp_path / 'build'}").returncode != 0
    assert not exported(first) and not exported(second)
    assert len(list((tmp_path / "build" / "bundles").glob("*/manifest.json"))) == 2


def test_a_port_a_stopped_server_just_left_is_free(tmp_path):
    """Stopping `make run` leaves its connections in TIME-WAIT for a minute; the server binds with SO_REUSEADDR,
    so the check must too, and not say the port is in use when nothing listens."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its end of the connection waits in TIME-WAIT
        client.close()
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
            waiting = False
        except OSError:
            waiting = True
    assert waiting, "no TIME-WAIT was left: the test proves nothing"
    result = subprocess.run(
        ["python3", "infra/local/preflight.py", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_make_deploy_without_credentials_or_region_stops_in_one_line_each(tmp_path):
    """Before sam build or sam deploy's questions: what to set, nothing else."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MAKE"))}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    result = subprocess.run(["make", "-s", "deploy"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("cannot deploy: no AWS credentials: set AWS_PROFILE") and "AWS_ACCESS_KEY_ID" in lines[0]
    assert lines[1].startswith("cannot deploy: no AWS region: set AWS_REGION")
    assert "Building" not in result.stdout and "Configuring SAM deploy" not in result.stdout


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_make_deploy_takes_the_region_from_either_variable(tmp_path, variable):
    """The SDKs read AWS_REGION first, then AWS_DEFAULT_REGION: the check passes on either and hands the region
    to `sam deploy`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MAKE"))}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", variable: "eu-west-1",
            "PYTHONPATH": str(ROOT)}  # fmt: skip
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "infra.aws_check"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "eu-west-1\n", "")


def test_make_run_stream_without_nodejs_says_in_one_line_what_to_install(tmp_path):
    kinesis = tmp_path / "kinesis"
    kinesis.mkdir()
    shutil.copyfile(ROOT / "infra/local/kinesis/package-lock.json", kinesis / "package-lock.json")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no node, no npm
    result = subprocess.run(["/usr/bin/make", "-s", "stream-deps", "STREAM=1", f"KINESIS_DIR={kinesis}"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == (
        "STREAM=1 needs Node.js 18+ and npm for kinesalite: apt-get install nodejs npm (or https://nodejs.org)"
    )
    assert make("stream-deps").returncode == 0  # without STREAM=1 nothing is needed


@pytest.mark.parametrize(
    ("stop", "status"),
    [("kill %1", 128 + 15), ("kill -INT $(pgrep -P $(jobs -p %1))", 0)],
    ids=["SIGTERM to make", "SIGINT to the server"],
)
def test_make_run_as_a_background_job_of_a_script_stops_cleanly_within_a_second(tmp_path, stop, status):
    """A non-interactive shell's background job starts with SIGINT ignored. SIGTERM to make (`kill %1`, which make
    passes on) or SIGINT to the server itself must stop the server cleanly: its port closed within a second, its
    store closed (SQLite removes the `-wal` file when its last connection closes). The small committed bundle,
    taken as built."""
    small = "tests/fixtures/bundle/small"
    log, state = tmp_path / "run.log", tmp_path / "state.sqlite3"
    script = f"""
make -s run PORT=0 BUILD={tmp_path} BUNDLE={small} -o {small}/manifest.json STATE_FILE={state} > {log} 2>&1 &
for i in $(seq 1 240); do grep -q '^requests' {log} && break; sleep 0.5; done
{stop}
wait %1
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    said = log.read_text()
    port = int(re.search(r"at http://127\.0\.0\.1:(\d+)", said).group(1))  # type: ignore[union-attr]
    assert done.returncode == status, said + done.stderr
    deadline = time.monotonic() + 1
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _listening(port), "the server still listens a second after the signal"
    assert state.exists() and not state.with_name("state.sqlite3-wal").exists(), "the store was not closed"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
