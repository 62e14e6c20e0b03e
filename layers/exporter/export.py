"""Turns a model file into a verified model bundle (the model layer's content).

    python -m layers.exporter MODEL OUT_DIR [--name NAME] [--sequences N] [--mode M] [--window W]

MODEL is a `.keras` file (Keras 3, or Keras 2.13-2.15), a `.h5` file (Keras 2.0-2.15, or Keras 3) or a SavedModel
directory written by Keras 2 (TensorFlow 2.x). The bundle is written to a temporary directory beside OUT_DIR,
verified, then moved into place, so OUT_DIR only ever holds a complete bundle that passed verification.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import absl.logging
import keras
from tqdm import tqdm

from carryover.core.domain import REPLY_LIMIT_BYTES, KeyWindow
from carryover.errors import UnsupportedModel
from carryover.keras_model.read import content_hash
from carryover.manifest import NAME_PATTERN, Companion, CompanionRole, Manifest, Mode
from carryover.modes import MODES, Graph, ServingMode
from carryover.store.item import ITEM_LIMIT_BYTES, largest_item_bytes
from layers.exporter import formats, from_keras2, legacy
from layers.exporter.convert import ConversionFailed, litert_flatbuffer
from layers.exporter.verify import ENGINES_STEP, RELATIVE, TOLERANCE, Verification, verify

KERAS_DEFAULT_NAME = re.compile(r"(sequential|functional|model)(_\d+)?")
KERAS_FILE = "model.keras"
LITERT_FILE = "step.tflite"
ENGINES = ("tensorflow", "litert")


class ExportFailed(RuntimeError):
    pass


def default_name(model: keras.Model, source: Path) -> str:
    """The model's own name, or the file's stem when Keras named it (`sequential`, `functional_2`, ...)."""
    if not KERAS_DEFAULT_NAME.fullmatch(model.name) and re.fullmatch(NAME_PATTERN, model.name):
        return str(model.name)
    return re.sub(r"[^A-Za-z0-9._-]", "-", source.stem)[:64] or "model"


@dataclass(frozen=True)
class Loaded:
    """A model file read: the Keras 3 model the bundle holds, and for a Keras 2 file the network as tf_keras read
    it (what the export verifies against) and what was translated between the two."""

    model: keras.Model
    origin: str  # the file for people: "a Keras 2.1.6 .h5 file"
    translated: list[str] = field(default_factory=list)
    keras2: Any = None


def load_source(source: Path) -> Loaded:
    """The model in any format `formats` knows; ExportFailed in one line when it cannot be read or served."""
    try:
        file = formats.inspect(source)
        if file.format != "keras3":
            notes: list[str] = []
            keras2 = legacy.read(file, notes)
            return Loaded(from_keras2.rebuild(keras2, file.origin, notes), file.origin, notes, keras2)
        if file.config is not None:
            formats.check_layers(file, file.config, set(dir(keras.layers)))
        return Loaded(keras.saving.load_model(source, compile=False), file.origin)
    except UnsupportedModel as error:
        raise ExportFailed(f"{source}: {error}") from None
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise ExportFailed(f"{source}: cannot be read as a Keras model ({legacy.first_line(error)})") from None


def build_manifest(model: keras.Model, mode: ServingMode, graph: Graph, name: str) -> Manifest:
    return Manifest(
        name=name,
        version=content_hash(model),
        mode=mode.name,
        window=graph.window,
        input=graph.input_spec,
        outputs=tuple(spec for spec, _ in graph.outputs),
        states=graph.states,
        files={"tensorflow": KERAS_FILE, "litert": LITERT_FILE},
    )


def _stateful(model: keras.Model) -> bool:
    return any(getattr(layer, "stateful", False) for layer in model.layers)


def choose_mode(model: keras.Model, mode: Mode | None, window: int | None) -> tuple[ServingMode, int | None]:
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
    return MODES[mode], window


def graph_for(model: keras.Model, mode: ServingMode, window: int | None) -> tuple[keras.Model, Graph]:
    """The model as the mode runs it (the graph may reshape it: `graph.model`), and its graph."""
    graph = mode.read(model, window)
    return graph.model, graph


@dataclass(frozen=True)
class Exported:
    manifest: Manifest
    checks: dict[str, Verification]  # engine name -> its worst difference from Keras
    origin: str  # the file for people: "a Keras 2.1.6 .h5 file"
    keras2: bool  # read with Keras 2 (tf_keras) and rebuilt in Keras 3
    translated: list[str]  # what that needed


def _nothing(*_: object) -> None:
    pass


@dataclass(frozen=True)
class Plan:
    """What an export writes, decided before anything is written."""

    model: keras.Model
    mode: ServingMode
    graph: Graph
    manifest: Manifest
    loaded: Loaded
    reference: Any  # what the engines are verified against: the model, or for a Keras 2 file the network tf_keras read


def state_home(manifest: Manifest) -> str:
    """Where a user's state will live, in words: in the DynamoDB item, or (too large for one beside the default
    idempotency keys and a recorded response) as an object beside it, `store/blobs.py`."""
    size = f"a user's state: {manifest.state_bytes:,} bytes"
    if largest_item_bytes(manifest.state_bytes, REPLY_LIMIT_BYTES, KeyWindow()) <= ITEM_LIMIT_BYTES:
        return f"{size}, kept in the DynamoDB item"
    return (
        f"{size}, more than a DynamoDB item holds ({ITEM_LIMIT_BYTES:,} bytes): kept as an object beside it (the "
        "stack's state bucket; locally beside the SQLite items)"
    )


def plan(source: Path, name: str | None, mode: Mode | None, window: int | None) -> Plan:
    loaded = load_source(source)
    try:
        serving, window = choose_mode(loaded.model, mode, window)
        model, graph = graph_for(loaded.model, serving, window)
        manifest = build_manifest(model, serving, graph, name or default_name(model, source))
        reference = model if loaded.keras2 is None else legacy.reference(loaded.keras2, serving.name == "carry")
    except (UnsupportedModel, ExportFailed) as error:  # ours: one line already
        raise ExportFailed(f"{source}: {loaded.origin}: {error}") from None
    except ValueError as error:  # Keras' own, from reading the model
        raise ExportFailed(f"{source}: {loaded.origin}: {legacy.first_line(error)}") from None
    return Plan(model, serving, graph, manifest, loaded, reference)


def write_bundle(source: Path, planned: Plan, staging: Path, on_step: Callable[[str], None]) -> None:
    on_step("converting the model for LiteRT")
    planned.model.save(staging / KERAS_FILE)  # a real .keras file, whatever the source format
    try:
        flatbuffer = litert_flatbuffer(planned.graph)
    except ConversionFailed as error:
        raise ExportFailed(f"{source}: {planned.loaded.origin}: {error}") from None
    (staging / LITERT_FILE).write_bytes(flatbuffer)
    planned.manifest.write(staging)


def _verified(
    source: Path, planned: Plan, staging: Path, sequences: int, on_step: Callable[[str], None],
    on_sequence: Callable[[], None],
) -> Any:  # fmt: skip
    """Each engine, loaded from the staged bundle, against the Keras reference; raises ExportFailed if one differs."""
    on_step("loading both engines from the bundle")
    engines = [planned.mode.engine(engine, staging, planned.manifest) for engine in ENGINES]
    results = verify(
        engines, planned.manifest, planned.reference, planned.graph, sequences, on_sequence=on_sequence, on_step=on_step
    )
    for engine, result in results.items():
        if not result.passed:
            raise ExportFailed(
                f"{source}: the {engine} engine differs from Keras by {result.worst} (allowed: {TOLERANCE} + "
                f"{RELATIVE} x |answer|) over {result.sequences} chunked sequences"
            )
    return results


def export(
    source: Path,
    out: Path,
    name: str | None = None,
    sequences: int = 50,
    on_step: Callable[[str], None] = _nothing,
    on_sequence: Callable[[], None] = _nothing,
    mode: Mode | None = None,
    window: int | None = None,
    companion: Path | None = None,
    role: CompanionRole = "next",
) -> Exported:
    """Writes a bundle for `source` to `out`; raises ExportFailed if it is unsupported or does not verify.
    `companion` is a second model the bundle keeps beside it, under the same name (its `role`: the version a
    rollout moves to, or the one it moves from). `on_step` hears each step's name as it starts, `on_sequence`
    each verified sequence."""
    on_step("loading the model")
    planned = plan(source, name, mode, window)
    kept = plan(companion, planned.manifest.name, None, None) if companion else None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        write_bundle(source, planned, staging, on_step)
        results = _verified(source, planned, staging, sequences, on_step, on_sequence)
        if kept is not None and companion is not None:
            (staging / role).mkdir()

            def on_kept_step(step: str) -> None:
                on_step(f"the {role} model: {step}")

            write_bundle(companion, kept, staging / role, on_kept_step)
            _verified(companion, kept, staging / role, sequences, on_kept_step, on_sequence)
            planned = replace(planned, manifest=planned.manifest.model_copy(update={"companion": Companion(
                role=role, directory=role)}))  # fmt: skip
            planned.manifest.write(staging)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    loaded = planned.loaded
    return Exported(planned.manifest, results, loaded.origin, loaded.keras2 is not None, loaded.translated)


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
    parser.add_argument("model", type=Path, help="a .keras or .h5 file, or a SavedModel directory written by Keras 2")
    parser.add_argument("out", type=Path, help="the bundle directory to write")
    parser.add_argument(
        "--name", help="model name in the API and the state table (default: the Keras name, or the file's stem)"
    )
    parser.add_argument("--sequences", type=int, default=50, help="random chunked sequences to verify on")
    parser.add_argument("--mode", choices=list(MODES), help="default: chosen from the model (see README)")
    parser.add_argument("--window", type=int, help="window mode: the timesteps each answer is computed on")
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument("--previous", type=Path, help="the model this one replaces, kept exact for a rollback")
    kept.add_argument("--next", type=Path, help="the model a rollout moves to, warmed up while this one answers")
    args = parser.parse_args()
    absl.logging.set_verbosity(absl.logging.ERROR)  # the converter's deprecation notices say nothing to act on
    started, steps = time.perf_counter(), _Steps()
    print(f"exporting {args.model} into a verified bundle at {args.out}", flush=True)
    with tqdm(
        total=args.sequences * (2 if args.previous or args.next else 1),
        unit="sequence",
        leave=False,
        delay=0.5,
        desc="    verified",
        disable=not sys.stderr.isatty(),  # a bar redrawn with carriage returns is for a terminal, not a log
    ) as bar:

        def step(name: str) -> None:
            steps(name)
            if name == ENGINES_STEP:  # the bar's time and rate count from here, not from the export's start
                bar.reset()

        try:
            role: CompanionRole = "previous" if args.previous else "next"
            companion = args.previous or args.next
            exported = export(
                args.model, args.out, args.name, args.sequences, step, lambda: bar.update(), args.mode, args.window,
                companion, role,
            )  # fmt: skip
        except ExportFailed as error:
            bar.close()
            sys.exit(f"export failed: {error}")
        except OSError as error:  # what the file system refused: a folder the bundle is written in, most often
            bar.close()
            sys.exit(
                f"export failed: {error.strerror}: {error.filename}; the bundle's folder must be writable "
                f"({args.out.parent}), or BUNDLE=... puts the bundle elsewhere"
            )
    steps.done()
    if exported.keras2:
        translated = f"; translated: {'; '.join(exported.translated)}" if exported.translated else ""
        print(f"{exported.origin}, read with Keras 2 (tf-keras) and rebuilt in Keras 3{translated}")
    checks = ", ".join(f"{engine} {check.worst}" for engine, check in exported.checks.items())
    manifest = exported.manifest
    print(state_home(manifest))
    print(
        f"bundle {args.out}: {manifest.name} {manifest.version}, {MODES[manifest.mode].describe(manifest)}, in "
        f"{time.perf_counter() - started:.0f} s; largest difference from Keras over {args.sequences} chunked "
        f"sequences: {checks}"
    )


if __name__ == "__main__":
    main()
