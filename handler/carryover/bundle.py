"""Loads a model bundle: its manifest, its serving mode and the engine that runs it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from carryover.core.domain import Role
from carryover.engine import Engine
from carryover.errors import UnsupportedModel
from carryover.manifest import Manifest
from carryover.modes import mode_of


@dataclass(frozen=True)
class ServedModel:
    manifest: Manifest
    engine: Engine
    role: Role


@dataclass(frozen=True)
class ModelBundle:
    """The model that answers, and the companion its bundle keeps beside it (a rollout's next or previous)."""

    manifest: Manifest
    engine: Engine
    companion: ServedModel | None = None

    @property
    def models(self) -> tuple[ServedModel, ...]:
        """Every model of the bundle, the one that answers first."""
        answering = ServedModel(self.manifest, self.engine, "answers")
        return (answering,) if self.companion is None else (answering, self.companion)

    @classmethod
    def load(cls, path: Path, engine: str | None = None) -> ModelBundle:
        """`engine` None: LiteRT when the bundle has its file, else TensorFlow."""
        answering = cls._load_one(path, engine)
        companion = answering.manifest.companion
        if companion is None:
            return answering
        kept = cls._load_one(path / companion.directory, engine)
        return cls(answering.manifest, answering.engine, ServedModel(kept.manifest, kept.engine, companion.role))

    @classmethod
    def _load_one(cls, path: Path, engine: str | None) -> ModelBundle:
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
