"""Every user's state as one JSON line, for inspection, analytics and moving to another stack, and back.

A line: {"user_id", "model", "steps", "updated_at", "stream": {shard: sequence number}, "versions": [{"version",
"since", "at", "kind", "state": {"<layer>.<tensor>": [values...]}}, ...]}: each version's state decoded in its
manifest's layout when the bundle holds that version, else as "blob" (float32, base64). The first version is the
one that answered last. Deleted, expired and unreadable items are not exported. An import writes each user whose
item is absent (never over an existing one), as a new item holding those states and stream positions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from carryover.core.domain import ModelState, UserState
from carryover.manifest import STATE_DTYPE, Manifest
from carryover.store import StateStore, WriteConflict
from carryover.store.item import Absent, Live, Write


def _decoded(model: ModelState, manifest: Manifest | None) -> dict[str, Any]:
    found: dict[str, Any] = {"version": model.version, "since": model.since, "at": model.at, "kind": model.kind}
    tensors = manifest.unpack_state(model.blob) if manifest is not None else None
    if manifest is None or tensors is None:
        return found | {"blob": base64.b64encode(model.blob).decode()}
    names = [f"{spec.layer}.{tensor}" for spec in manifest.states for tensor in spec.tensors]
    return found | {"state": {name: tensor.tolist() for name, tensor in zip(names, tensors, strict=True)}}


def export_lines(store: StateStore, model: str, manifests: Iterable[Manifest]) -> Iterator[str]:
    """Every user's live state, one line each; `manifests`: the versions whose states are decoded."""
    known = {manifest.version: manifest for manifest in manifests}
    for user_id, stored in store.scan():
        if not isinstance(stored, Live):
            continue
        state = stored.state
        line = {
            "user_id": user_id,
            "model": model,
            "steps": state.stream,
            "updated_at": state.updated_at.isoformat(),
            "stream": {shard: str(at) for shard, at in stored.applied.last.items()},
            "versions": [_decoded(version, known.get(version.version)) for version in state.models],
        }
        yield json.dumps(line, separators=(",", ":"))


def _blob(version: dict[str, Any]) -> bytes:
    if "blob" in version:
        return base64.b64decode(version["blob"])
    return b"".join(np.asarray(values, dtype=STATE_DTYPE).tobytes() for values in version["state"].values())


def state_of(line: dict[str, Any]) -> UserState:
    """The state a line exported, as a write leaves it."""
    models = tuple(
        ModelState(str(v["version"]), _blob(v), int(v["since"]), int(v["at"]), v.get("kind")) for v in line["versions"]
    )
    return UserState(int(line["steps"]), models, datetime.fromisoformat(line["updated_at"]))


@dataclass
class Imported:
    written: int = 0
    existing: int = 0  # users who already have an item: left as they are


def import_lines(store: StateStore, lines: Iterable[str]) -> Imported:
    found = Imported()
    for text in lines:
        line = json.loads(text)
        user, positions = str(line["user_id"]), tuple((s, int(at)) for s, at in line.get("stream", {}).items())
        if not isinstance(store.load(user), Absent):
            found.existing += 1
            continue
        try:
            store.save(user, Write(state_of(line), applied=positions), Absent())
            found.written += 1
        except WriteConflict:  # written meanwhile by someone else: theirs stands
            found.existing += 1
    return found
