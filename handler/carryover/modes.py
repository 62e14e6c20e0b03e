"""How a model is served, decided once per bundle: each serving mode is one object that the exporter, the
bundle loader, the engines and the service ask, instead of testing the mode's name.

- carry: the recurrent state is carried from one request to the next (a free time dimension, or any stateful
  layer); a request's rows run one timestep after another from the saved state.
- window: a stateless model trained on fixed windows answers each new row on the window ending there; the
  user's state is their last `window` rows.

Keras-side work (reading a model, its LiteRT function, the reference it is checked against) belongs to the
mode's graph (`read`), and each engine is imported only when loaded, so the zip deployment never needs Keras.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carryover.engine import Engine
from carryover.manifest import Manifest, Mode

if TYPE_CHECKING:
    from carryover.keras_model.carry import CarryGraph
    from carryover.keras_model.window import WindowGraph

    Graph = CarryGraph | WindowGraph
else:
    Graph = Any


# What each mode loads, imported only when used: its Keras-side graph and its engine per engine name.
_CLASSES: dict[Mode, dict[str, str]] = {
    "carry": {
        "graph": "carryover.keras_model.carry:CarryGraph",
        "litert": "carryover.engine.litert:LiteRTEngine",
        "tensorflow": "carryover.engine.tensorflow:TensorFlowEngine",
    },
    "window": {
        "graph": "carryover.keras_model.window:WindowGraph",
        "litert": "carryover.engine.litert:LiteRTWindowEngine",
        "tensorflow": "carryover.engine.tensorflow:TensorFlowWindowEngine",
    },
}


def _load(mode: Mode, kind: str) -> Any:
    module, _, name = _CLASSES[mode][kind].partition(":")
    return getattr(importlib.import_module(module), name)


class ServingMode(ABC):
    name: Mode

    def read(self, model: Any, window: int | None) -> Graph:
        """The Keras model as this mode runs it; raises UnsupportedModel naming what cannot be served."""
        graph: Graph = _load(self.name, "graph")(model, window)
        return graph

    def engine(self, engine: str, bundle: Path, manifest: Manifest) -> Engine:
        """The engine `engine` ("litert" or "tensorflow") loaded from the bundle."""
        loaded: Engine = _load(self.name, engine).load(bundle, manifest)
        return loaded

    @abstractmethod
    def real_rows(self, seen: int, rows: int, manifest: Manifest) -> list[int] | None:
        """For each of a request's `rows`, the last of which is the `seen`th row its state has seen, how many rows
        of its input were the user's; None when every answer sees all the rows its state has."""

    @abstractmethod
    def describe(self, manifest: Manifest) -> str:
        """One phrase for people: what a request does in this mode."""


class CarryMode(ServingMode):
    """Every answer sees the user's whole stream, through the recurrent state."""

    name: Mode = "carry"

    def real_rows(self, seen: int, rows: int, manifest: Manifest) -> list[int] | None:
        return None

    def describe(self, manifest: Manifest) -> str:
        return "carry mode (recurrent state carried between requests)"


class WindowMode(ServingMode):
    """Each answer sees the window of rows ending at it, zeros before the user's first row."""

    name: Mode = "window"

    def real_rows(self, seen: int, rows: int, manifest: Manifest) -> list[int] | None:
        return [min(seen - rows + i, manifest.window or 0) for i in range(1, rows + 1)]

    def describe(self, manifest: Manifest) -> str:
        return f"window mode (each answer on the user's last {manifest.window} rows)"


MODES: dict[Mode, ServingMode] = {mode.name: mode for mode in (CarryMode(), WindowMode())}


def mode_of(manifest: Manifest) -> ServingMode:
    return MODES[manifest.mode]
