"""`make run` and `make model` as a user types them: checks before any slow step, and a bundle rebuilt only
when the model, how it is served, or the exporter changed; STREAM=1 without Node.js is one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

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


def test_a_missing_model_stops_make_run_in_one_line(tmp_path):
    result = make("run", "MODEL=nope.keras", "PORT=0", f"BUILD={tmp_path}")
    assert result.returncode != 0 and "MODEL=nope.keras: no such file" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_savedmodel_directory_is_a_model_path(tmp_path):
    folder = write_function_savedmodel(tmp_path / "exported")
    assert make("preflight", f"MODEL={folder}", "PORT=0").returncode == 0
    planned = make("-n", "model", f"MODEL={folder}", f"BUNDLE={tmp_path / 'bundle'}", f"BUILD={tmp_path}")
    assert planned.returncode == 0 and f"layers.exporter.export {folder} " in planned.stdout, planned.stderr


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
