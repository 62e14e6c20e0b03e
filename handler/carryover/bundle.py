"""Loads a model bundle: its manifest and the engine that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carryover.engine import Engine
from carryover.errors import UnsupportedModel
from carryover.manifest import Manifest


@dataclass(frozen=True)
class ModelBundle:
    manifest: Manifest
    engine: Engine

    @classmethod
    def load(cls, path: Path, engine: str) -> ModelBundle:
        manifest = Manifest.read(path)
        if engine not in manifest.files:
            raise UnsupportedModel(f"bundle {path} has no file for engine {engine!r}")
        from carryover.engine.tensorflow import TensorFlowEngine  # heavy: import only when chosen

        return cls(manifest, TensorFlowEngine.load(path, manifest))
