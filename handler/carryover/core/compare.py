"""Two model versions over every user's history (the row log), before shipping one: how far apart their answers
are, per output (a distribution of the differences at every timestep of every user), and which users diverge most.
Each version runs from zero over each user's rows, every user of a batch in one `run_many`; outputs compared are
those both versions have, of the same shape."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from carryover.bundle import ServedModel
from carryover.core.history import RowLog, history

BINS = np.logspace(-9, 3, 241)  # differences from 1e-9 to 1e3, 20 bins a decade (below: the first, above: the last)
BATCH_USERS = 256
TOP = 20


@dataclass
class Spread:
    """The differences of one output at every timestep compared: a histogram, their count, sum and largest."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(BINS) + 1, np.int64))
    total: int = 0
    sum: float = 0.0
    largest: float = 0.0

    def add(self, differences: np.ndarray) -> None:
        self.counts += np.bincount(np.searchsorted(BINS, differences), minlength=len(BINS) + 1)
        self.total += differences.size
        self.sum += float(differences.sum())
        self.largest = max(self.largest, float(differences.max(initial=0.0)))

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile, at most the largest (a bound: at most one bin, 12%,
        above the true one)."""
        if not self.total:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.counts), q * self.total))
        return min(float(BINS[min(index, len(BINS) - 1)]), self.largest)


@dataclass
class Comparison:
    users: int = 0
    skipped: int = 0  # users whose log does not reach back to the start of their stream
    timesteps: int = 0
    outputs: dict[str, Spread] = field(default_factory=dict)
    top: list[tuple[float, str, str, int]] = field(default_factory=list)  # (largest difference, user, output, steps)


def compare(
    old: ServedModel, new: ServedModel, log: RowLog, progress: Callable[[int, Comparison], None] | None = None
) -> Comparison:
    """Both versions over every user of `log` whose history is whole."""
    found = Comparison()
    names = [
        spec.name for spec in old.manifest.outputs
        if any(other.name == spec.name and other.units == spec.units for other in new.manifest.outputs)
    ]  # fmt: skip
    found.outputs = {name: Spread() for name in names}
    users = log.users()
    for start in range(0, len(users), BATCH_USERS):
        _batch(old, new, log, users[start : start + BATCH_USERS], found)
        if progress is not None:
            progress(min(start + BATCH_USERS, len(users)), found)
    return found


def _batch(old: ServedModel, new: ServedModel, log: RowLog, users: Sequence[str], found: Comparison) -> None:
    features = old.manifest.input.features
    entries = log.entries(users)
    rows = {user: h.rows for user in users if (h := history(entries[user], features)) is not None and h.whole}
    found.skipped += sum(1 for user in users if entries[user]) - len(rows)
    if not rows:
        return
    ran = [
        model.engine.run_many(list(rows.values()), [model.manifest.zero_state()] * len(rows)) for model in (old, new)
    ]
    for (user, user_rows), before, after in zip(rows.items(), *ran, strict=True):
        found.users += 1
        found.timesteps += len(user_rows)
        for name, spread in found.outputs.items():
            differences = np.abs(np.asarray(after.outputs[name]) - np.asarray(before.outputs[name])).ravel()
            spread.add(differences)
            entry = (float(differences.max(initial=0.0)), user, name, len(user_rows))
            (heapq.heappushpop if len(found.top) >= TOP else heapq.heappush)(found.top, entry)
