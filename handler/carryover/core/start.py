"""Where each of a bundle's models starts for a request, from what the user's item holds.

Each model starts from its own state or its own fallback, whatever the other model finds: it continues its saved
state when it is current; catches it up when it missed rows the kept history still holds (`caught_up`);
otherwise, with a history, derives its state by running from zero over the kept rows (`replayed`). With none of
these it starts from zero where the user's stream stands: the model that answers as `reset` (or, with
STATE_ON_INCOMPATIBLE=reject, the request is refused), a companion as `warmed`. The user's stream goes on (only a
`reset` the user asks for, or an item that cannot be read, restarts it), so a state that began late is not
complete, and says so (`since` > 0: it has seen the rows since), never passing for one that saw every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from carryover.bundle import ServedModel
from carryover.core.domain import ModelState, StateOrigin, UserState
from carryover.errors import ItemFormatUnsupported, StateIncompatible, Unprocessable
from carryover.manifest import STATE_DTYPE
from carryover.observability import logger
from carryover.store.item import FORMAT, Live, Stored, Unreadable, Unsupported

IncompatiblePolicy = Literal["reset", "reject"]


@dataclass(frozen=True)
class Start:
    state: list[np.ndarray]
    since: int  # the stream position the state began at (0: it has seen every row)
    origin: StateOrigin


@dataclass(frozen=True)
class Beginning:
    """Where a request starts: the user's stream position, each model's start (in the bundle's order), the rows
    kept, and the states of versions outside the bundle."""

    stream: int
    starts: tuple[Start, ...]
    history: np.ndarray  # (rows, features), the kept rows ending at `stream`
    others: tuple[ModelState, ...] = ()


def run(model: ServedModel, rows: np.ndarray, state: list[np.ndarray]) -> list[np.ndarray]:
    """The state `model` reaches over `rows` from `state`."""
    reached = model.engine.run(rows, state)
    if not reached.finite:
        raise Unprocessable("the kept rows make the model give a non-finite state; nothing was saved")
    return reached.state


def _history(state: UserState, features: int) -> np.ndarray:
    rows = np.frombuffer(state.history, dtype=STATE_DTYPE)
    if not len(rows) or len(rows) % features:
        return np.zeros((0, features), np.float32)
    return rows.reshape(-1, features).astype(np.float32)


def _resume(model: ServedModel, state: UserState, history: np.ndarray) -> Start | None:
    """The model's start from the item, if it can have one without resetting the user."""
    manifest = model.manifest
    entry = state.of(manifest.version, manifest.state_kind)
    saved = manifest.unpack_state(entry.blob) if entry is not None else None
    if entry is not None and saved is not None:
        gap = state.stream - entry.at
        if gap == 0:
            return Start(saved, entry.since, "continued")
        if 0 < gap <= len(history):
            return Start(run(model, history[-gap:], saved), entry.since, "caught_up")
    if len(history) and history.shape[1] == manifest.input.features:
        return Start(run(model, history, manifest.zero_state()), state.stream - len(history), "replayed")
    return None


def restart(models: Sequence[ServedModel]) -> Beginning:
    """Where rows asking for `reset` start, after others of the same user."""
    return _afresh(models, "reset", models[0].manifest.input.features)


def _afresh(models: Sequence[ServedModel], origin: StateOrigin, features: int) -> Beginning:
    starts = tuple(Start(model.manifest.zero_state(), 0, origin) for model in models)
    return Beginning(0, starts, np.zeros((0, features), np.float32))


def _unreadable(user_id: str, models: Sequence[ServedModel], policy: IncompatiblePolicy) -> Beginning:
    """An item that cannot be read: nothing of it can be continued, the user's stream included."""
    _no_state(user_id, models[0], policy)
    return _afresh(models, "reset", models[0].manifest.input.features)


def begin(
    user_id: str, stored: Stored, reset: bool, models: Sequence[ServedModel], policy: IncompatiblePolicy
) -> Beginning:
    features = models[0].manifest.input.features
    match stored:
        case Unsupported(format=found):
            logger.warning("item of a newer format", extra={"user_id": user_id, "format": found})
            raise ItemFormatUnsupported(
                f"user {user_id!r}: the saved state is of item format {found}, written by a newer release; this one "
                f"reads formats up to {FORMAT} and leaves it as it is: retry shortly"
            )
        case Live() | Unreadable() if reset:
            return _afresh(models, "reset", features)
        case Unreadable():
            return _unreadable(user_id, models, policy)
        case Live(state=state):
            return _continued(user_id, state, models, policy)
    return _afresh(models, "new", features)  # absent, a tombstone, expired


def _continued(user_id: str, state: UserState, models: Sequence[ServedModel], policy: IncompatiblePolicy) -> Beginning:
    """Each model from its own state or its own fallback; the other model's state is never lost for it."""
    history = _history(state, models[0].manifest.input.features)
    starts = [_resume(model, state, history) for model in models]
    if starts[0] is None:
        _no_state(user_id, models[0], policy)
    kept = tuple(
        start if start is not None else Start(model.manifest.zero_state(), state.stream, "warmed" if i else "reset")
        for i, (model, start) in enumerate(zip(models, starts, strict=True))
    )
    served = {model.manifest.version for model in models}
    others = tuple(model for model in state.models if model.version not in served)
    return Beginning(state.stream, kept, history, others)


def _no_state(user_id: str, answering: ServedModel, policy: IncompatiblePolicy) -> None:
    """The answering version has no state it can continue: refused with STATE_ON_INCOMPATIBLE=reject; otherwise
    it starts from zero where the stream stands (logged, and said by its answer)."""
    manifest = answering.manifest
    if policy == "reject":
        raise StateIncompatible(
            f"user {user_id!r}: the saved state does not fit model {manifest.name} {manifest.version}; "
            'send "reset": true to start over'
        )
    logger.info(
        "no state of this version: it starts from zero", extra={"user_id": user_id, "version": manifest.version}
    )
