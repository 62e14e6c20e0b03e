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

from carryover.bundle import ModelBundle  # noqa: E402
from carryover.keras_graph import RecurrentGraph, keras  # noqa: E402
from layers.model.export import export  # noqa: E402
from tests.models import BUILDERS  # noqa: E402


@dataclass(frozen=True)
class Served:
    """A test model: the original Keras model and the bundle exported from it, loaded."""

    keras_model: keras.Model
    graph: RecurrentGraph
    path: Path
    bundle: ModelBundle


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    root = tmp_path_factory.mktemp("models")
    found = {}
    for key, build in BUILDERS.items():
        model = build()
        source = root / f"{key}.keras"
        model.save(source)
        export(source, root / key, sequences=3)
        found[key] = Served(model, RecurrentGraph(model), root / key, ModelBundle.load(root / key, "tensorflow"))
    return found
