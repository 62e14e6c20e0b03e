"""Turns a `.keras` file into a verified model bundle (the model layer's content).

    python -m layers.model.export MODEL.keras OUT_DIR [--name NAME] [--sequences N]

The bundle is written to a temporary directory beside OUT_DIR, verified, then moved into place, so OUT_DIR
only ever holds a complete bundle that passed verification.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import absl.logging
import tensorflow as tf
from tqdm import tqdm

from carryover.engine import Engine
from carryover.engine.litert import LiteRTEngine, LiteRTWindowEngine
from carryover.engine.tensorflow import TensorFlowEngine, TensorFlowWindowEngine
from carryover.errors import UnsupportedModel
from carryover.keras_graph import RecurrentGraph, WindowGraph, content_hash, keras
from carryover.manifest import NAME_PATTERN, Manifest, Mode, StateSpec
from layers.model import legacy
from layers.model.verify import TOLERANCE, Verification, verify

KERAS_DEFAULT_NAME = re.compile(r"(sequential|functional|model)(_\d+)?")
KERAS_FILE = "model.keras"
LITERT_FILE = "step.tflite"


class ExportFailed(RuntimeError):
    pass


def default_name(model: keras.Model, source: Path) -> str:
    """The model's own name, or the file's stem when Keras named it (`sequential`, `functional_2`, ...)."""
    if not KERAS_DEFAULT_NAME.fullmatch(model.name) and re.fullmatch(NAME_PATTERN, model.name):
        return str(model.name)
    return re.sub(r"[^A-Za-z0-9._-]", "-", source.stem)[:64] or "model"


def load_source(source: Path) -> tuple[keras.Model, list[str]]:
    """The model in a `.keras` file, or in a Keras 2 `.h5` file (translated; the list says what changed)."""
    if not source.is_file():
        raise ExportFailed(f"{source}: no such file")
    try:
        if legacy.is_legacy(source):
            return legacy.load(source)
        return keras.saving.load_model(source, compile=False), []
    except (ValueError, TypeError, KeyError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ExportFailed(f"{source}: cannot be read as a Keras model ({reason})") from None


def build_manifest(model: keras.Model, graph: RecurrentGraph | WindowGraph, name: str) -> Manifest:
    if isinstance(graph, WindowGraph):
        mode: Mode = "window"
        window: int | None = graph.window
        states: tuple[StateSpec, ...] = (graph.state,)
    else:
        mode, window, states = "carry", None, tuple(graph.states)
    return Manifest(
        name=name,
        version=content_hash(model),
        mode=mode,
        window=window,
        input=graph.input_spec,
        outputs=tuple(spec for spec, _ in graph.outputs),
        states=states,
        files={"tensorflow": KERAS_FILE, "litert": LITERT_FILE},
    )


def _stateful(model: keras.Model) -> bool:
    return any(getattr(layer, "stateful", False) for layer in model.layers)


def choose_mode(model: keras.Model, mode: Mode | None, window: int | None) -> tuple[Mode, int | None]:
    """Carry for a free time dimension and for any stateful model; window for a stateless model trained on
    fixed windows; either on request."""
    fixed = model.inputs[0].shape[1] if len(model.inputs) == 1 and len(model.inputs[0].shape) >= 2 else None
    mode = mode or ("window" if fixed is not None and not _stateful(model) else "carry")
    if mode == "carry" and window is not None:
        raise ExportFailed("WINDOW goes with MODE=window")
    if mode == "window":
        if _stateful(model):
            raise ExportFailed("a stateful model streams in carry mode: export it with MODE=carry")
        window = window or fixed
        if window is None:
            raise ExportFailed("MODE=window needs WINDOW=n: the number of timesteps the model answers on")
    return mode, window


def _twin(model: keras.Model, edit: Callable[[dict[str, Any]], None]) -> keras.Model:
    """The same model, weights included, built from its config after `edit` changed it."""
    config = model.get_config()
    edit(config)
    twin = type(model).from_config(config)
    twin.set_weights(model.get_weights())
    return twin


def reshaped(model: keras.Model, batch: int | None, time: int | None) -> keras.Model:
    """The same model taking (batch, time, ...) inputs: a free time dimension to stream a fixed-window model in
    carry mode, or batch 1 for a stateful model saved with another batch size."""

    def reshape(config: dict[str, Any]) -> None:
        for layer in config["layers"]:
            layer.pop("build_config", None)  # the shapes it was built with: rebuilt from the new input instead
            if layer["class_name"] == "InputLayer":
                shape = layer["config"].pop("batch_input_shape", None) or layer["config"]["batch_shape"]
                layer["config"]["batch_shape"] = [batch, time, *shape[2:]]

    return _twin(model, reshape)


def graph_for(model: keras.Model, mode: Mode, window: int | None) -> tuple[keras.Model, RecurrentGraph | WindowGraph]:
    """The model as the mode runs it (reshaped for carry mode when it must be), and its graph."""
    if mode == "window":
        return model, WindowGraph(model, window or 0)
    shape = model.inputs[0].shape
    if shape[1] is not None or shape[0] not in (None, 1):
        model = reshaped(model, None if shape[0] is None else 1, None)
    try:
        return model, RecurrentGraph(model)
    except UnsupportedModel as error:
        raise UnsupportedModel(
            f"{error}; or export with MODE=window WINDOW=n to answer on each user's last n rows"
        ) from None


def step_flatbuffer(graph: RecurrentGraph, manifest: Manifest) -> bytes:
    """The model's single step, (input, *states) -> (*outputs, *new states), as a LiteRT flatbuffer."""
    signature = [tf.TensorSpec((1, manifest.input.features), tf.float32)] + [
        tf.TensorSpec((1, units), tf.float32) for units in manifest.state_shapes
    ]

    def step(x: tf.Tensor, *states: tf.Tensor) -> list[tf.Tensor]:
        outputs, new_states = graph.step(x, list(states))
        return [*outputs, *new_states]

    function = tf.function(step, input_signature=signature).get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([function]).convert()


def _unroll(config: Any) -> None:
    """Every recurrent layer in a model config (wrapped ones too) set to unroll."""
    if isinstance(config, dict):
        if config.get("class_name") in ("LSTM", "GRU", "SimpleRNN"):
            config["config"]["unroll"] = True
        for value in config.values():
            _unroll(value)
    elif isinstance(config, list):
        for value in config:
            _unroll(value)


def window_flatbuffer(graph: WindowGraph, manifest: Manifest) -> bytes:
    """The whole model over a batch of windows, (n, window, features) -> each output (n, units), for LiteRT.
    A window's length is fixed, so recurrent layers are unrolled (same weights): LiteRT then needs no loop
    over time, and the number of windows can vary from call to call."""
    twin = WindowGraph(_twin(graph.model, _unroll), graph.window)
    signature = [tf.TensorSpec((None, graph.window, manifest.input.features), tf.float32)]
    function = tf.function(twin.call, input_signature=signature).get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([function]).convert()


@dataclass(frozen=True)
class Exported:
    manifest: Manifest
    checks: dict[str, Verification]  # engine name -> its worst difference from Keras
    translated: list[str]  # what a Keras 2 file needed to load in Keras 3


def _nothing(*_: object) -> None:
    pass


def export(
    source: Path,
    out: Path,
    name: str | None = None,
    sequences: int = 50,
    on_step: Callable[[str], None] = _nothing,
    on_sequence: Callable[[], None] = _nothing,
    mode: Mode | None = None,
    window: int | None = None,
) -> Exported:
    """Writes a bundle for `source` to `out`; raises ExportFailed if it is unsupported or does not verify.
    `on_step` hears each step's name as it starts, `on_sequence` each verified sequence."""
    on_step("loading the model")
    model, translated = load_source(source)
    try:
        mode, window = choose_mode(model, mode, window)
        model, graph = graph_for(model, mode, window)
        manifest = build_manifest(model, graph, name or default_name(model, source))
    except (UnsupportedModel, ValueError, ExportFailed) as error:
        raise ExportFailed(f"{source}: {error}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        on_step("converting the model's step to LiteRT")
        model.save(staging / KERAS_FILE)  # a real .keras file, whatever the source format
        try:
            if isinstance(graph, WindowGraph):
                flatbuffer = window_flatbuffer(graph, manifest)
            else:
                flatbuffer = step_flatbuffer(graph, manifest)
        except Exception as error:  # the converter's own errors, of many kinds
            raise ExportFailed(f"{source}: LiteRT cannot convert the model: {str(error).splitlines()[0]}") from None
        (staging / LITERT_FILE).write_bytes(flatbuffer)
        manifest.write(staging)
        on_step("loading both engines")
        engines: list[Engine]
        if isinstance(graph, WindowGraph):
            engines = [TensorFlowWindowEngine(graph, manifest), LiteRTWindowEngine.load(staging, manifest)]
        else:
            engines = [TensorFlowEngine(graph, manifest), LiteRTEngine.load(staging, manifest)]
        on_step(f"verifying both engines against Keras on {sequences} chunked sequences")
        results = verify(engines, manifest, model, graph, sequences, on_sequence=on_sequence)
        for engine, result in results.items():
            if not result.passed:
                raise ExportFailed(
                    f"{source}: the {engine} engine differs from Keras by {result.max_abs_diff:.3g} "
                    f"(tolerance {TOLERANCE}) over {result.sequences} chunked sequences"
                )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(manifest, results, translated)


def _mode(manifest: Manifest) -> str:
    if manifest.mode == "window":
        return f"window mode (each answer on the user's last {manifest.window} rows)"
    return "carry mode (recurrent state carried between requests)"


class _Steps:
    """Prints each step as it starts, and how long it took when the next one starts."""

    def __init__(self) -> None:
        self._started: float | None = None

    def __call__(self, name: str) -> None:
        self.done()
        print(f"  {name} ...", flush=True)
        self._started = time.perf_counter()

    def done(self) -> None:
        if self._started is not None:
            print(f"    {time.perf_counter() - self._started:.1f} s", flush=True)
            self._started = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the .keras file, or a Keras 2 .h5 file")
    parser.add_argument("out", type=Path, help="the bundle directory to write")
    parser.add_argument(
        "--name", help="model name in the API and the state table (default: the Keras name, or the file's stem)"
    )
    parser.add_argument("--sequences", type=int, default=50, help="random chunked sequences to verify on")
    parser.add_argument("--mode", choices=["carry", "window"], help="default: chosen from the model (see README)")
    parser.add_argument("--window", type=int, help="window mode: the timesteps each answer is computed on")
    args = parser.parse_args()
    absl.logging.set_verbosity(absl.logging.ERROR)  # the converter's deprecation notices say nothing to act on
    started, steps = time.perf_counter(), _Steps()
    print(f"exporting {args.model} into a verified bundle at {args.out}", flush=True)
    with tqdm(total=args.sequences, unit="sequence", leave=False, delay=0.5, desc="    verified") as bar:
        try:
            exported = export(
                args.model, args.out, args.name, args.sequences, steps, lambda: bar.update(), args.mode, args.window
            )
        except ExportFailed as error:
            bar.close()
            sys.exit(f"export failed: {error}")
    steps.done()
    if exported.translated:
        print(f"translated from Keras 2: {'; '.join(exported.translated)}")
    checks = ", ".join(f"{engine} {check.max_abs_diff:.2g}" for engine, check in exported.checks.items())
    print(
        f"bundle {args.out}: {exported.manifest.name} {exported.manifest.version}, {_mode(exported.manifest)}, in "
        f"{time.perf_counter() - started:.0f} s; max abs diff from Keras over {args.sequences} chunked sequences: "
        f"{checks}"
    )


if __name__ == "__main__":
    main()
