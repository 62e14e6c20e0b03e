"""What the service answers with, before any transport renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from carryover.core.domain import StateOrigin, VersionReport


@dataclass(frozen=True)
class Prediction:
    """A request's answer: applied now, or (`replayed`) the answer an earlier request with its key got."""

    user_id: str
    model_version: str
    outputs: dict[str, np.ndarray]  # output name -> (rows, units) float32: every timestep, or only the last
    steps: int  # the user's timesteps since their state was new or reset, this request's included
    origin: StateOrigin
    rows: int  # the request's timesteps
    seen: int | None  # the rows the answering version's state has seen (`steps`: every one; None: a replay of an
    # answer recorded before answers said it, rendered as it was)
    replayed: bool = False
    others: tuple[VersionReport, ...] = ()  # the bundle's other model: where its state started, its steps


@dataclass(frozen=True)
class VersionView:
    """A model version's state for the user: the rows it has seen, whether that is every row of the stream
    (complete), and whether it is current."""

    version: str
    steps: int
    complete: bool
    current: bool


@dataclass(frozen=True)
class LastAnswer:
    """The newest answer the item keeps (a stream batch's, or a keyed request's): its outputs over its rows."""

    outputs: dict[str, np.ndarray]
    steps: int
    rows: int


@dataclass(frozen=True)
class StateView:
    user_id: str
    model_version: str
    steps: int
    updated_at: datetime
    expires_at: datetime
    versions: tuple[VersionView, ...]
    last: LastAnswer | None = None
    stream: dict[str, int] = field(default_factory=dict)  # shard id -> its last record in the state
