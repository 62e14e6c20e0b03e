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
    def load(cls, path: Path, engine: str | None = None) -> ModelBundle:
        """`engine` None: LiteRT when the bundle has its file, else TensorFlow."""
        manifest = Manifest.read(path)
        engine = engine or ("litert" if "litert" in manifest.files else "tensorflow")
        if engine not in manifest.files:
            raise UnsupportedModel(f"bundle {path} has no file for engine {engine!r}; export it again")
        # Each engine's runtime is imported only when chosen: the zip deployment has no TensorFlow.
        if engine == "litert":
            from carryover.engine.litert import LiteRTEngine

            return cls(manifest, LiteRTEngine.load(path, manifest))
        from carryover.engine.tensorflow import TensorFlowEngine

        return cls(manifest, TensorFlowEngine.load(path, manifest))
