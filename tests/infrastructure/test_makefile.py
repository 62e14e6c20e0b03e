"""`make run` and `make model` as a user types them: checks before any slow step, and a bundle rebuilt only
when the model, how it is served, or the exporter changed."""

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


def test_the_bundle_is_rebuilt_only_when_something_it_comes_from_changed(tmp_path, served):
    model = tmp_path / "model.keras"
    shutil.copyfile(served["classifier"].path / "model.keras", model)
    common = (f"MODEL={model}", f"BUNDLE={tmp_path / 'bundle'}", f"BUILD={tmp_path}")

    def exported(*extra: str) -> bool:
        result = make("model", *common, *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        return "exporting" in result.stdout

    assert exported()
    assert not exported()  # nothing changed: nothing to do
    assert exported("MODE=carry") and not exported("MODE=carry")  # served another way: another bundle
    assert exported()
    os.utime(model)  # the model file changed
    assert exported()
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["mode"] == "window"
