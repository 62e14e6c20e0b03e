"""Shared fixtures: exported test models and AWS settings that never reach a real account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
from carryover.manifest import Manifest
from carryover.modes import MODES, Graph
from layers.exporter.export import export, graph_for
from tests.models import BUILDERS

ENGINES = ("litert", "tensorflow")


@dataclass(frozen=True)
class Served:
    """A test model: the original Keras model and the bundle exported from it, loaded with each engine."""

    keras_model: keras.Model
    graph: Graph
    path: Path
    bundles: dict[str, ModelBundle]

    @property
    def manifest(self) -> Manifest:
        return self.bundles[ENGINES[0]].manifest


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    root = tmp_path_factory.mktemp("models")
    found = {}
    for key, build in BUILDERS.items():
        model = build()
        source = root / f"{key}.keras"
        model.save(source)
        manifest = export(source, root / key, sequences=3).manifest
        bundles = {engine: ModelBundle.load(root / key, engine) for engine in ENGINES}
        model, graph = graph_for(model, MODES[manifest.mode], manifest.window)
        found[key] = Served(model, graph, root / key, bundles)
    return found


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param
