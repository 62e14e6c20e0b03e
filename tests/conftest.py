"""Shared fixtures: the models tests serve and AWS settings that never reach a real account.

Keras and TensorFlow are imported only when a test asks for a model built with them (`served[...]`,
`legacy_served`): the fast tier (`make test-fast`, tests marked `fast`) serves the small committed bundle
(`small`) and never imports them, which `tests/unit/fast/conftest.py` checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    KERAS_BACKEND="tensorflow",
    TF_CPP_MIN_LOG_LEVEL="2",
)

from carryover.bundle import ModelBundle
from carryover.manifest import Manifest, Mode

if TYPE_CHECKING:
    from carryover.modes import Graph

ENGINES = ("litert", "tensorflow")
SMALL_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "bundle" / "small"


@dataclass(frozen=True)
class Bundled:
    """A bundle the tests serve, loaded with each engine it is asked for."""

    path: Path
    bundles: dict[str, ModelBundle]

    @property
    def manifest(self) -> Manifest:
        return next(iter(self.bundles.values())).manifest


@dataclass(frozen=True)
class Served(Bundled):
    """A test model: the original Keras model and the bundle exported from it."""

    keras_model: Any  # keras.Model
    graph: Graph
    translated: list[str]  # what the export said it translated (a Keras 2 file)


def exported(
    source: Path, out: Path, reference: Any = None, mode: Mode | None = None, engines: tuple[str, ...] = ENGINES
) -> Served:
    """`source` exported into `out` (3 chunked sequences verified) and loaded with `engines`; `reference` is what
    the bundle must answer as (default: the Keras 3 model in `source`, as the mode runs it)."""
    import keras

    from carryover.modes import MODES
    from layers.exporter.export import KERAS_FILE, export, graph_for

    done = export(source, out, sequences=3, mode=mode)
    bundles = {engine: ModelBundle.load(out, engine) for engine in engines}
    model = keras.saving.load_model(source if reference is None else out / KERAS_FILE, compile=False)
    model, graph = graph_for(model, MODES[done.manifest.mode], done.manifest.window)
    return Served(out, bundles, model if reference is None else reference, graph, done.translated)


class Zoo(dict[str, Served]):
    """The test models of `tests/models.py` by key, each built and exported the first time a test asks for it,
    once per run: a run of a few tests exports only what they use."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def __missing__(self, key: str) -> Served:
        from tests.models import ASKED_MODES, BUILDERS

        source = self._root / f"{key}.keras"
        BUILDERS[key]().save(source)
        found = self[key] = exported(source, self._root / key, mode=ASKED_MODES.get(key))
        return found


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def small() -> Bundled:
    """The small committed bundle (`tests/fixtures/bundle/make.py`): the demo's architecture with 16 units,
    served with LiteRT, no Keras needed."""
    return Bundled(SMALL_BUNDLE, {"litert": ModelBundle.load(SMALL_BUNDLE, "litert")})


@pytest.fixture(scope="session")
def legacy_served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    """Each Keras 2 file of `tests/legacy_files.py`, exported; its reference the network as tf_keras computes it.
    Served over HTTP only: loaded here with LiteRT alone, for its manifest."""
    from tests.legacy_files import LEGACY

    root = tmp_path_factory.mktemp("legacy")
    found = {}
    for key, write in LEGACY.items():
        file = write(root)
        found[key] = exported(file.path, root / f"{key}-bundle", file.reference, engines=("litert",))
    return found


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param
