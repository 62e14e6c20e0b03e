"""Bundles of model files, exported once per source: a model file (or SavedModel directory) exported again only
when it changed, so that switching between models, or back, costs nothing the second time."""

from __future__ import annotations

import hashlib
from pathlib import Path

from carryover.manifest import MANIFEST_FILE


def source_key(model: Path, *options: str) -> str:
    """What names a source's bundle: its path, size and time of change (the newest file's, for a directory), and
    the export options."""
    files = sorted(p for p in model.rglob("*") if p.is_file()) if model.is_dir() else [model]
    stamp = [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("|".join([*stamp, *options]).encode()).hexdigest()[:16]


def bundle_for(model: Path, cache: Path, name: str | None = None, *options: str) -> tuple[Path, bool]:
    """The bundle of `model` under `cache`, exported (named `name`) unless it already is; and whether it was."""
    out = cache / source_key(model, name or "", *options)
    if (out / MANIFEST_FILE).is_file():
        return out, False
    from layers.exporter.export import export  # TensorFlow: only when something must be exported

    export(model, out, name=name)
    return out, True
