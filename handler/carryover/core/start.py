"""Where a request's state starts: zeros for a new user or on reset, the saved state when it fits the model,
otherwise reset (or refused, with STATE_ON_INCOMPATIBLE=reject)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from carryover.errors import StateIncompatible
from carryover.manifest import Manifest
from carryover.observability import logger
from carryover.store.item import Live, StateOrigin, Stored, Unreadable

IncompatiblePolicy = Literal["reset", "reject"]


@dataclass(frozen=True)
class Start:
    state: list[np.ndarray]
    steps: int
    origin: StateOrigin


def start(user_id: str, stored: Stored, reset: bool, manifest: Manifest, policy: IncompatiblePolicy) -> Start:
    match stored:
        case Live() | Unreadable() if reset:
            return Start(manifest.zero_state(), 0, "reset")
        case Live(state=saved) if saved.model_version == manifest.version:
            state = manifest.unpack_state(saved.blob)
            if state is not None:
                return Start(state, saved.steps, "continued")
        case Live() | Unreadable():
            pass
        case _:  # absent, a tombstone, expired
            return Start(manifest.zero_state(), 0, "new")
    if policy == "reject":
        raise StateIncompatible(
            f"user {user_id!r}: the saved state does not fit model {manifest.name} {manifest.version}; "
            'send "reset": true to start over'
        )
    logger.info("incompatible state reset", extra={"user_id": user_id, "readable": not isinstance(stored, Unreadable)})
    return Start(manifest.zero_state(), 0, "reset")
