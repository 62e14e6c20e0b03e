"""Shared fixtures: exported test models and AWS settings that never reach a real account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    KERAS_BACKEND="tensorflow",
    TF_CPP_MIN_LOG_LEVEL="2",
)

import keras

from carryover.bundle import ModelBundle
from carryover.manifest import Manifest, Mode
from carryover.modes import MODES, Graph
from layers.exporter.export import KERAS_FILE, export, graph_for
from tests.legacy_files import LEGACY
from tests.models import ASKED_MODES, BUILDERS

ENGINES = ("litert", "tensorflow")


@dataclass(frozen=True)
class Served:
    """A test model: the original Keras model and the bundle exported from it, loaded with each engine."""

    keras_model: keras.Model
    graph: Graph
    path: Path
    bundles: dict[str, ModelBundle]
    translated: list[str]  # what the export said it translated (a Keras 2 file)

    @property
    def manifest(self) -> Manifest:
        return self.bundles[ENGINES[0]].manifest


def exported(
    source: Path, out: Path, reference: Any = None, mode: Mode | None = None, engines: tuple[str, ...] = ENGINES
) -> Served:
    """`source` exported into `out` (3 chunked sequences verified) and loaded with `engines`; `reference` is what
    the bundle must answer as (default: the Keras 3 model in `source`, as the mode runs it)."""
    done = export(source, out, sequences=3, mode=mode)
    bundles = {engine: ModelBundle.load(out, engine) for engine in engines}
    model = keras.saving.load_model(source if reference is None else out / KERAS_FILE, compile=False)
    model, graph = graph_for(model, MODES[done.manifest.mode], done.manifest.window)
    return Served(model if reference is None else reference, graph, out, bundles, done.translated)


class Zoo(dict[str, Served]):
    """The test models of `tests/models.py` by key, each built and exported the first time a test asks for it,
    once per run: a run of a few tests exports only what they use."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def __missing__(self, key: str) -> Served:
        source = self._root / f"{key}.keras"
        BUILDERS[key]().save(source)
        found = self[key] = exported(source, self._root / key, mode=ASKED_MODES.get(key))
        return found


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def legacy_served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    """Each Keras 2 file of `tests/legacy_files.py`, exported; its reference the network as tf_keras computes it.
    Served over HTTP only: loaded here with LiteRT alone, for its manifest."""
    root = tmp_path_factory.mktemp("legacy")
    found = {}
    for key, write in LEGACY.items():
        file = write(root)
        found[key] = exported(file.path, root / f"{key}-bundle", file.reference, engines=("litert",))
    return found


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param
