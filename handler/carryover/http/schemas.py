"""The HTTP API's response bodies, each built from what the service answered."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from carryover.bundle import ModelBundle
from carryover.core.domain import Role, StateOrigin
from carryover.core.results import Prediction, StateView
from carryover.manifest import InputKind, Manifest, Mode, OutputSpec, StateSpec
from carryover.modes import mode_of


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelRef(_Response):
    name: str
    version: str


class OtherVersion(_Response):
    """The bundle's other model, run on the same rows: where its state started, and the rows it has seen."""

    version: str
    role: Role
    state: StateOrigin
    steps: int


class PredictResponse(_Response):
    user_id: str
    model: ModelRef
    outputs: dict[str, list[list[float]]]
    steps: int
    state: StateOrigin
    seen: int | None = None  # the rows of the user's stream the answering version's state has seen: `steps` when
    # it has seen every one (absent only in the replay of an answer an earlier release recorded)
    real_rows: list[int] | None = None  # window mode: how many rows of each timestep's window were the user's
    versions: list[OtherVersion] | None = None  # a bundle with a companion model


class VersionState(_Response):
    """A model version's saved state: the rows it has seen; complete when that is every row of the user's stream
    (a version that began later is still learning the user's context), current when it is up to date."""

    version: str
    steps: int
    complete: bool
    current: bool


class LastAnswer(_Response):
    """The newest answer the item keeps: a stream batch's (every one), or a keyed request's."""

    outputs: dict[str, list[list[float]]]
    steps: int
    rows: int


class StateResponse(_Response):
    user_id: str
    model: ModelRef
    steps: int
    updated_at: datetime
    expires_at: datetime
    versions: list[VersionState]
    last_answer: LastAnswer | None = None
    stream: dict[str, str] | None = None  # shard id -> the sequence number of its last record in the state


class ModelInput(_Response):
    name: str
    features: int
    kind: InputKind
    vocabulary: int | None
    shape: tuple[int, ...] | None  # frames: one timestep's shape, which a request sends as a nested array


class ModelState(_Response):
    layer: str
    kind: str
    tensors: tuple[str, ...]
    shapes: list[list[int]]

    @classmethod
    def of(cls, spec: StateSpec) -> ModelState:
        return cls(layer=spec.layer, kind=spec.kind, tensors=spec.tensors, shapes=spec.shapes)


class BundleModel(_Response):
    role: Role
    version: str
    mode: Mode
    window: int | None


class ModelResponse(_Response):
    name: str
    version: str
    engine: str
    mode: Mode
    window: int | None
    input: ModelInput
    outputs: tuple[OutputSpec, ...]
    states: list[ModelState]
    models: list[BundleModel]  # every model of the bundle: the one that answers, and its companion if any

    @classmethod
    def of(cls, bundle: ModelBundle, engine: str) -> ModelResponse:
        manifest = bundle.manifest
        models = [
            BundleModel(role=m.role, version=m.manifest.version, mode=m.manifest.mode, window=m.manifest.window)
            for m in bundle.models
        ]
        return cls(
            name=manifest.name,
            version=manifest.version,
            engine=engine,
            mode=manifest.mode,
            window=manifest.window,
            input=ModelInput(
                name=manifest.input.name,
                features=manifest.input.features,
                kind=manifest.input.kind,
                vocabulary=manifest.input.vocabulary,
                shape=manifest.input.shape,
            ),
            outputs=manifest.outputs,
            states=[ModelState.of(spec) for spec in manifest.states],
            models=models,
        )


class HealthResponse(_Response):
    status: Literal["ok"]
    model: ModelRef
    engine: str
    store: Literal["reachable"]

    @classmethod
    def of(cls, manifest: Manifest, engine: str) -> HealthResponse:
        return cls(
            status="ok", model=ModelRef(name=manifest.name, version=manifest.version), engine=engine, store="reachable"
        )


def prediction_body(prediction: Prediction, manifest: Manifest) -> str:
    """The response body of a prediction: a replay renders the same bytes as the first answer, since both come
    from the same float32 values."""
    return PredictResponse(
        user_id=prediction.user_id,
        model=ModelRef(name=manifest.name, version=prediction.model_version),
        outputs={name: rows.tolist() for name, rows in prediction.outputs.items()},
        steps=prediction.steps,
        state=prediction.origin,
        seen=prediction.seen,
        real_rows=mode_of(manifest).real_rows(
            prediction.steps if prediction.seen is None else prediction.seen, prediction.rows, manifest
        ),
        versions=[
            OtherVersion(version=other.version, role=other.role, state=other.origin, steps=other.steps)
            for other in prediction.others
        ]
        or None,
    ).model_dump_json(exclude_none=True)


def state_body(view: StateView, manifest: Manifest) -> StateResponse:
    return StateResponse(
        user_id=view.user_id,
        model=ModelRef(name=manifest.name, version=view.model_version),
        steps=view.steps,
        updated_at=view.updated_at,
        expires_at=view.expires_at,
        versions=[
            VersionState(version=v.version, steps=v.steps, complete=v.complete, current=v.current)
            for v in view.versions
        ],
        last_answer=None
        if view.last is None
        else LastAnswer(
            outputs={name: rows.tolist() for name, rows in view.last.outputs.items()},
            steps=view.last.steps,
            rows=view.last.rows,
        ),
        stream={shard: str(at) for shard, at in view.stream.items()} or None,
    )
