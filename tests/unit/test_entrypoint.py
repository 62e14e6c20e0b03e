"""The Lambda entry point as deployed: configured from the environment, invoked with the files in `events/`."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
from typing import Any

import pytest

from carryover.composition import build_handler
from carryover.config import ConfigurationError, Settings
from carryover.errors import UnsupportedModel
from tests.clients import HandlerClient, load_event
from tests.unit.conftest import TABLE

NO_CLIENT: Any = object()  # a cold start that fails, or never calls the store, needs no DynamoDB client


@pytest.fixture
def entrypoint(dynamodb, served, monkeypatch):
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("MODEL_BUNDLE", str(served["seed"].path))
    import snapshot_restore_py as hooks  # type: ignore[import-untyped]

    sys.modules.pop("app", None)
    yield importlib.import_module("app")
    sys.modules.pop("app", None)
    hooks.get_before_snapshot().clear()  # what this import registered: the next import registers its own
    hooks.get_after_restore().clear()


def test_event_files_drive_every_route(entrypoint):
    client = HandlerClient(entrypoint.lambda_handler)
    inputs = json.loads(load_event("predict.json")["body"])["inputs"]

    predicted = client.invoke(load_event("predict.json"))
    assert predicted.status == 200
    assert predicted.body["user_id"] == "alice" and predicted.body["state"] == "new"
    assert predicted.body["steps"] == len(inputs) and len(predicted.body["outputs"]["main_output"]) == len(inputs)

    again = client.invoke(load_event("predict.json"))
    assert again.body["state"] == "continued" and again.body["steps"] == 2 * len(inputs)
    assert again.body["outputs"] != predicted.body["outputs"]  # same inputs, carried state: new answers

    state = client.invoke(load_event("get_state.json"))
    assert state.status == 200 and state.body["steps"] == 2 * len(inputs)
    assert state.body["model"] == predicted.body["model"]
    assert state.body["expires_at"] > state.body["updated_at"]

    model = client.invoke(load_event("get_model.json"))
    assert model.status == 200
    assert model.body["input"] == {
        "name": "num_input",
        "features": 8,
        "kind": "features",
        "vocabulary": None,
        "shape": None,
    }
    assert model.body["outputs"] == [{"name": "main_output", "units": 1, "per_timestep": True}]
    assert model.body["states"] == [{"layer": "lstm", "kind": "LSTM", "tensors": ["h", "c"], "shapes": [[320], [320]]}]
    assert model.body["version"] == predicted.body["model"]["version"] and model.body["engine"] == "litert"

    health = client.invoke(load_event("get_health.json"))
    assert health.status == 200 and health.body["status"] == "ok" and health.body["store"] == "reachable"

    assert client.invoke(load_event("delete_state.json")).status == 204
    assert client.invoke(load_event("get_state.json")).status == 404


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({}, ["TABLE_NAME", "required"]),
        ({"TABLE_NAME": "states", "MODEL_BUNDLE": "/nonexistent"}, ["MODEL_BUNDLE", "/nonexistent", "make model"]),
        ({"TABLE_NAME": "states", "MAX_TIMESTEPS": "many"}, ["MAX_TIMESTEPS", "integer"]),
        ({"TABLE_NAME": "states", "MAX_TIMESTEPS": "0"}, ["MAX_TIMESTEPS", "greater than or equal to 1"]),
        ({"TABLE_NAME": "states", "ENGINE": "onnx"}, ["ENGINE", "litert", "tensorflow"]),
        ({"TABLE_NAME": "states", "DYNAMODB_ENDPOINT": "not a url"}, ["DYNAMODB_ENDPOINT", "URL"]),
    ],
)
def test_bad_configuration_fails_at_cold_start_naming_the_variable(environ, words, served):
    environ = {"MODEL_BUNDLE": str(served["seed"].path)} | environ
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(environ)
    for word in words:
        assert word in str(raised.value)


def test_configuration_defaults(served):
    settings = Settings.from_env({"TABLE_NAME": "states", "MODEL_BUNDLE": str(served["seed"].path)})
    assert (settings.max_timesteps, settings.state_ttl_days, settings.engine) == (1000, 30, None)


@pytest.fixture
def layer_bundle(served, tmp_path):
    """A bundle as the zip deployment's model layer ships it: the manifest and the LiteRT file only."""
    for name in ("manifest.json", "step.tflite"):
        shutil.copyfile(served["seed"].path / name, tmp_path / name)
    return tmp_path


def cold_start_error(bundle, engine: str) -> str:
    settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(bundle), "ENGINE": engine})
    with pytest.raises(UnsupportedModel) as raised:
        build_handler(settings, client=NO_CLIENT)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_tensorflow_engine_on_the_model_layer_fails_in_one_line(layer_bundle):
    message = cold_start_error(layer_bundle, "tensorflow")
    assert "ENGINE=tensorflow" in message and "set ENGINE=litert" in message
    settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(layer_bundle), "ENGINE": "litert"})
    assert callable(build_handler(settings, client=NO_CLIENT))


def test_tensorflow_engine_without_tensorflow_fails_in_one_line(served, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else find_spec(name, *a)
    )
    message = cold_start_error(served["seed"].path, "tensorflow")
    assert "TensorFlow is not installed" in message and "ENGINE=litert" in message and "container image" in message


def test_snapstart_hooks_warm_the_model_then_renew_the_connections_and_forget_the_cache(entrypoint, monkeypatch):
    """As Lambda's runtime runs them (`snapshot_restore_py`): before the snapshot, the model runs once; after the
    restore, the DynamoDB client is a new one and the item cache is empty, so the first request reads its item
    (other instances wrote since the snapshot) and is served."""
    import snapshot_restore_py as hooks

    service = entrypoint.service
    runs: list[int] = []
    engine_run = service.bundle.engine.run

    def counted(*args: Any) -> Any:
        runs.append(1)
        return engine_run(*args)

    monkeypatch.setattr(service.bundle.engine, "run", counted)
    client = HandlerClient(entrypoint.lambda_handler)
    assert client.invoke(load_event("predict.json")).status == 200
    for hook, args, kwargs in hooks.get_before_snapshot():
        hook(*args, **kwargs)
    assert runs == [1]
    snapshotted = service._store._client  # the connection the snapshot holds
    for hook, args, kwargs in hooks.get_after_restore():
        hook(*args, **kwargs)
    renewed = service._store._client
    assert renewed is not snapshotted and renewed.meta.region_name == snapshotted.meta.region_name
    reads: list[str] = []
    renewed.meta.events.register("before-call.dynamodb.GetItem", lambda **_: reads.append("GetItem"))
    again = client.invoke(load_event("predict.json"))
    assert again.status == 200 and again.body["state"] == "continued" and reads == ["GetItem"]
