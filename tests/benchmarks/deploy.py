"""A retrained model shipped as the README's runbook says, simulated: users keep streaming while instances of each
step serve them side by side, and the shift moves 10 % then 100 % of the requests at each step.

    steps: old alone -> (old, next = new) -> (new, previous = old) -> new alone

USERS users send in every phase; IDLE more send before and after the warm-up only, so the new version meets them
without a state. Per phase: how many requests' answering model found no state to continue, how many answers came
from a state that has not seen every row of the user's stream, how many requests found the other version's
state gone (the goal: none), whether any user's steps were lost or doubled, and the write units a request costs.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_service, lifetimes
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.manifest import Manifest
from carryover.store.codec import write_units
from carryover.store.dynamodb import DynamoDBStateStore, utc_now
from infra.table import ensure_table
from layers.exporter.export import export
from tests.clients import HandlerClient
from tests.stores import DynamoDBItems

USERS = 50
IDLE = 10  # users who send nothing while the new version warms up
# (phase, the kinds of instances serving, the share of requests the first kind gets)
PHASES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("before: old alone", ("old",), 1.0),
    ("warm-up, 10 % on (old, next)", ("old+next", "old"), 0.1),
    ("warm-up, 100 % on (old, next)", ("old+next",), 1.0),
    ("shift, 10 % on (new, previous)", ("new+previous", "old+next"), 0.1),
    ("shift, 100 % on (new, previous)", ("new+previous",), 1.0),
    ("after: new alone", ("new",), 1.0),
)


@dataclass
class Phase:
    name: str
    requests: int = 0
    resets: int = 0
    resets_of_warmed: int = 0  # of users the warm-up saw: the goal is none
    incomplete: int = 0  # answers from a state that has not seen every row of the user's stream (they say so)
    other_lost: int = 0  # requests that found the other version's state gone (reset or warmed again): the goal is none
    lost_or_doubled: int = 0
    units: list[int] = field(default_factory=list)


def retrained(bundle: Path, into: Path) -> Path:
    """The bundle's model with its weights moved a little: a new version of the same model."""
    model = keras.saving.load_model(bundle / Manifest.read(bundle).files["tensorflow"], compile=False)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(into)
    return into


def bundles(bundle: Path, work: Path) -> dict[str, Path]:
    """The four bundles of the runbook, exported as `make model` would (fewer verified sequences)."""
    source = Manifest.read(bundle)
    old, new = bundle / source.files["tensorflow"], retrained(bundle, work / "new.keras")
    export(old, work / "old+next", name=source.name, sequences=5, companion=new, role="next")
    export(new, work / "new+previous", name=source.name, sequences=5, companion=old, role="previous")
    export(new, work / "new", name=source.name, sequences=5)
    return {"old": bundle, "new": work / "new", "old+next": work / "old+next", "new+previous": work / "new+previous"}


def simulate(bundle: Path, client: Any, table: str, rounds: int, say: Callable[[str], None]) -> list[Phase]:
    """Each phase: `rounds` 1-row requests from each of USERS users, each to an instance of the phase's kinds."""
    ensure_table(client, table)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as work:
        say("exporting the retrained version and the runbook's bundles")
        paths = bundles(bundle, Path(work))
        settings = Settings.from_env({"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle)})
        handlers = {}
        for kind, path in paths.items():
            loaded = ModelBundle.load(path, "litert")
            store = DynamoDBStateStore(client, table, loaded.manifest.name, lifetimes(settings), utc_now)
            handlers[kind] = HandlerClient(
                create_lambda_handler(build_service(settings, loaded, store=store), settings)
            )
        manifest = Manifest.read(bundle)
        row = np.full((1, manifest.input.features), 1.0 if manifest.input.vocabulary else 0.1, np.float32)
        return [
            _phase(name, kinds, share, handlers, DynamoDBItems(client, table), (manifest.name, row), rounds)
            for name, kinds, share in PHASES
        ]


def _phase(
    name: str, kinds: tuple[str, ...], share: float, handlers: dict[str, HandlerClient], items: DynamoDBItems,
    request: tuple[str, np.ndarray], rounds: int,
) -> Phase:  # fmt: skip
    found, rng, (model, row) = Phase(name), random.Random(name), request
    warmed = name.startswith(("shift", "after"))
    users = [f"user-{index}" for index in range(USERS)]
    users += [] if name.startswith("warm-up") else [f"idle-{index}" for index in range(IDLE)]
    for _ in range(rounds):
        for user in users:
            kind = kinds[0] if rng.random() < share else kinds[-1]
            before = items.get(user, model)
            reply = handlers[kind].predict(user, row)
            assert reply.status == 200, reply.body
            after = items.saved(user, model)
            found.requests += 1
            found.resets += reply.body["state"] == "reset"
            found.resets_of_warmed += warmed and reply.body["state"] == "reset" and user.startswith("user-")
            found.incomplete += reply.body["seen"] < reply.body["steps"]
            found.other_lost += any(v["state"] in ("reset", "warmed") for v in reply.body.get("versions", []))
            previous = int(before["steps"]["N"]) if before else 0
            found.lost_or_doubled += reply.body["steps"] not in (previous + 1, 1)
            found.units.append(write_units(before, after))
    return found
