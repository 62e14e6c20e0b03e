"""Which Keras models load, and how those that cannot are refused."""

from __future__ import annotations

import io
import logging

import keras
import numpy as np
import pytest

from carryover.bundle import ModelBundle
from carryover.composition import build_store
from carryover.config import ConfigurationError, Settings
from carryover.keras_model.carry import CarryGraph
from carryover.keras_model.read import content_hash
from carryover.keras_model.window import WindowGraph
from carryover.manifest import Manifest
from layers.exporter.export import ExportFailed, export, state_home
from tests.conftest import SMALL_BUNDLE
from tests.models import seed


def sequential(*layers: keras.layers.Layer, name: str = "m") -> keras.Model:
    return keras.Sequential([keras.layers.Input(shape=(None, 4), batch_size=1), *layers], name=name)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: sequential(keras.layers.Conv1D(3, 2, name="conv")), ["'conv'", "Conv1D", "one timestep at a time"]),
        (
            lambda: sequential(keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")),
            ["'bi'", "backwards in time"],
        ),
        (
            lambda: sequential(
                keras.layers.Conv1D(3, 2, name="conv"),
                keras.layers.LSTM(3, return_sequences=True),
                keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi"),
            ),
            ["'conv'", "'bi'", "Conv1D", "Bidirectional", "supported layers are"],
        ),
        (lambda: sequential(keras.layers.GRU(3, go_backwards=True, name="back")), ["'back'", "go_backwards"]),
        (lambda: sequential(keras.layers.TimeDistributed(keras.layers.Flatten(), name="td")), ["'td'"]),
    ],
)
def test_unsupported_model_fails_at_export_naming_the_problem(tmp_path, build, words):
    source = tmp_path / "model.keras"
    build().save(source)
    with pytest.raises(ExportFailed) as raised:
        export(source, tmp_path / "bundle", sequences=1)
    for word in words:
        assert word in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "bundle").exists()


def test_a_bad_name_given_is_refused_and_a_bad_keras_name_gives_way_to_the_file_stem(tmp_path):
    source = tmp_path / "my-model.keras"
    sequential(keras.layers.LSTM(3), name="bad name!").save(source)
    with pytest.raises(ExportFailed, match="name"):
        export(source, tmp_path / "bundle", name="bad name!", sequences=1)
    assert export(source, tmp_path / "bundle", sequences=1).manifest.name == "my-model"


def test_two_inputs_are_refused():
    a, b = keras.layers.Input(shape=(None, 2)), keras.layers.Input(shape=(None, 2))
    model = keras.Model([a, b], keras.layers.LSTM(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="2 inputs; one is supported"):
        CarryGraph(model)


def test_seed_graph_describes_outputs_and_states():
    graph = CarryGraph(seed())
    assert [spec.name for spec, _ in graph.outputs] == ["main_output"]
    assert graph.output_positions == [0]
    assert [(s.layer, s.kind, s.tensors, s.units) for s in graph.states] == [("lstm", "LSTM", ("h", "c"), 320)]


def test_content_hash_follows_weights_only():
    model = seed()
    before = content_hash(model)
    assert content_hash(model) == before
    weights = model.get_weights()
    weights[0] = weights[0] + 1e-3
    model.set_weights(weights)
    assert content_hash(model) != before


def test_state_layout_round_trips_and_refuses_wrong_sizes(served):
    manifest: Manifest = served["stacked"].manifest
    assert manifest.state_shapes == (16, 12, 12)
    tensors = [np.arange(n, dtype=np.float32) + i for i, n in enumerate(manifest.state_shapes)]
    blob = manifest.pack_state(tensors)
    assert len(blob) == manifest.state_bytes == 40 * 4
    unpacked = manifest.unpack_state(blob)
    assert unpacked is not None
    for got, want in zip(unpacked, tensors, strict=True):
        np.testing.assert_array_equal(got, want)
    assert manifest.unpack_state(blob[:-4]) is None
    assert Manifest.read(served["stacked"].path) == manifest


def saved(tmp_path, model: keras.Model, name: str = "model.keras"):
    source = tmp_path / name
    model.save(source)
    return source


def test_mode_follows_the_model_unless_asked(tmp_path):
    from tests.models import classifier, last_step, stacked

    fixed = saved(tmp_path, classifier(), "fixed.keras")
    assert (export(fixed, tmp_path / "a", sequences=2).manifest.mode) == "window"  # stateless, fixed windows
    carried = export(fixed, tmp_path / "b", sequences=2, mode="carry").manifest
    assert (carried.mode, carried.window) == ("carry", None)  # streamed as if its time dimension were free
    free = saved(tmp_path, last_step(), "free.keras")
    assert export(free, tmp_path / "c", sequences=2).manifest.mode == "carry"
    windowed = export(free, tmp_path / "d", sequences=2, mode="window", window=6).manifest
    assert (windowed.mode, windowed.window, windowed.states[0].shape) == ("window", 6, (6, 8))
    stateful = saved(tmp_path, stacked(), "stateful.keras")
    assert export(stateful, tmp_path / "e", sequences=2).manifest.mode == "carry"


@pytest.mark.parametrize(
    ("mode", "window", "words"),
    [("window", None, ["MODE=window needs WINDOW=n"]), ("carry", 5, ["WINDOW goes with MODE=window"])],
)
def test_inconsistent_mode_requests_are_one_line(tmp_path, mode, window, words):
    from tests.models import last_step

    with pytest.raises(ExportFailed) as raised:
        export(saved(tmp_path, last_step()), tmp_path / "bundle", sequences=1, mode=mode, window=window)
    assert "\n" not in str(raised.value) and all(word in str(raised.value) for word in words)


def test_bidirectional_on_a_free_time_dimension_says_to_use_window_mode(tmp_path):
    model = keras.Sequential(
        [keras.layers.Input(shape=(None, 4)), keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")]
    )
    with pytest.raises(ExportFailed) as raised:
        export(saved(tmp_path, model), tmp_path / "bundle", sequences=1)
    assert "backwards in time" in str(raised.value) and "MODE=window WINDOW=n" in str(raised.value)


def test_a_state_too_large_for_a_dynamodb_item_is_kept_as_an_object_and_the_export_says_so(tmp_path):
    """A window of 13,000 rows of 8 features is 416,000 bytes a user: exported, the export naming the size and where
    it lives; a stack without a bucket to keep it in refuses to start, in one line saying what to set."""
    inputs = keras.layers.Input(shape=(13_000, 8), name="rows")
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(inputs)
    source = tmp_path / "long-window.keras"
    keras.Model(inputs, keras.layers.Dense(1, name="out")(pooled)).save(source)
    manifest = export(source, tmp_path / "bundle", sequences=1).manifest
    said = state_home(manifest)
    assert "416,000 bytes" in said and "409,600 bytes" in said and "kept as an object" in said
    assert "kept in the DynamoDB item" in state_home(Manifest.read(SMALL_BUNDLE))
    bundle = ModelBundle.load(tmp_path / "bundle", "litert")
    settings = Settings.from_env({"TABLE_NAME": "states", "MODEL_BUNDLE": str(tmp_path / "bundle")})
    with pytest.raises(ConfigurationError) as raised:
        build_store(settings, bundle, client=object())  # type: ignore[arg-type]
    assert "\n" not in str(raised.value) and "set STATE_BUCKET" in str(raised.value)


def test_window_models_referenced_in_one_process_are_traced_once_each_and_never_warn_of_retracing():
    """`make bench` and `make compare` run several window models' references in one process, on batches of any
    size: each model's graph is traced once, and TensorFlow's retracing warning (it counts the traces of every
    closure of one code together) never reaches the terminal."""
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    logging.getLogger("tensorflow").addHandler(handler)
    rng = np.random.default_rng(0)
    try:
        for _ in range(6):
            model = keras.Sequential([keras.layers.Input((4, 3)), keras.layers.LSTM(3), keras.layers.Dense(1)])
            graph = WindowGraph(model, 4)
            for length in (3, 7, 2):
                graph.reference(model, rng.normal(size=(length, 3)).astype(np.float32))
            assert graph._graph_call(model).experimental_get_tracing_count() == 1
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert "retracing" not in seen.getvalue()
