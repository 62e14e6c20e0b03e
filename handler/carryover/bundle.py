"""Loads a model bundle: its manifest, its serving mode and the engine that runs it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from carryover.engine import Engine
from carryover.errors import UnsupportedModel
from carryover.manifest import Manifest
from carryover.modes import mode_of


@dataclass(frozen=True)
class ModelBundle:
    manifest: Manifest
    engine: Engine

    @classmethod
    def load(cls, path: Path, engine: str | None = None) -> ModelBundle:
        """`engine` None: LiteRT when the bundle has its file, else TensorFlow."""
        manifest = Manifest.read(path)
        engine = engine or ("litert" if "litert" in manifest.files else "tensorflow")
        if engine not in manifest.files or not (path / manifest.files[engine]).is_file():
            hint = (
                "the zip deployment's model layer holds the LiteRT file only: set ENGINE=litert"
                if engine == "tensorflow"
                else "export it again with `make model`"
            )
            raise UnsupportedModel(f"ENGINE={engine}: bundle {path} has no file for this engine; {hint}")
        if engine == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
            raise UnsupportedModel(
                "ENGINE=tensorflow: TensorFlow is not installed here (the zip deployment's runtime layer has LiteRT "
                "only); set ENGINE=litert, or deploy a container image that installs TensorFlow"
            )
        return cls(manifest, mode_of(manifest).engine(engine, path, manifest))
