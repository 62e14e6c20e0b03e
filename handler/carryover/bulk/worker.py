"""The bootstrap over many users, a batch at a time (each batch: one read of their items, one run of the model over
all of them, their writes at once), with what it did counted."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from carryover.bundle import ModelBundle, ServedModel
from carryover.config import ConfigurationError
from carryover.core.bootstrap import Bootstrap, Tally
from carryover.core.history import RowLog
from carryover.core.writes import ConditionalWriter
from carryover.store import Clock, StateStore

BATCH_USERS = 256  # users a batch reads, runs and writes together
Progress = Callable[[int, Tally], None]  # users done so far, the tally so far


def next_version(bundle: ModelBundle) -> ServedModel:
    """The version a deployed bootstrap computes: the one the bundle keeps as next (a rollout's step 1)."""
    companion = bundle.companion
    if companion is None or companion.role != "next":
        raise ConfigurationError(
            f"bundle of {bundle.manifest.name} {bundle.manifest.version} keeps no next version: deploy step 1 of "
            "the rollout (make deploy MODEL=old.keras NEXT=new.keras) before bootstrapping it"
        )
    return companion


def bootstrap_all(
    model: ServedModel,
    store: StateStore,
    log: RowLog,
    clock: Clock,
    retries: int,
    progress: Progress | None = None,
    users: Sequence[str] | None = None,
) -> Tally:
    """Bootstraps `model` for every user of `log` (or `users`), BATCH_USERS at a time."""
    bootstrap = Bootstrap(model, store, ConditionalWriter(store, retries), log, clock)
    chosen = list(users if users is not None else log.users())
    total = Tally({})
    for start in range(0, len(chosen), BATCH_USERS):
        total.merge(bootstrap.run(chosen[start : start + BATCH_USERS]))
        if progress is not None:
            progress(min(start + BATCH_USERS, len(chosen)), total)
    return total
