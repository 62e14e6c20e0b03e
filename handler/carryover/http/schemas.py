"""The HTTP API's response bodies, each built from what the service answered."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from carryover.core.results import Prediction, StateView
from carryover.manifest import Manifest, Mode, OutputSpec, StateSpec
from carryover.modes import mode_of
from carryover.store.item import StateOrigin


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelRef(_Response):
    name: str
    version: str


class PredictResponse(_Response):
    user_id: str
    model: ModelRef
    outputs: dict[str, list[list[float]]]
    steps: int
    state: StateOrigin
    real_rows: list[int] | None = None  # window mode: how many rows of each timestep's window were the user's


class StateResponse(_Response):
    user_id: str
    model: ModelRef
    steps: int
    updated_at: datetime
    expires_at: datetime


class ModelInput(_Response):
    name: str
    features: int
    kind: Literal["features", "tokens"]
    vocabulary: int | None


class ModelState(_Response):
    layer: str
    kind: str
    tensors: tuple[str, ...]
    shapes: list[list[int]]

    @classmethod
    def of(cls, spec: StateSpec) -> ModelState:
        return cls(layer=spec.layer, kind=spec.kind, tensors=spec.tensors, shapes=spec.shapes)


class ModelResponse(_Response):
    name: str
    version: str
    engine: str
    mode: Mode
    window: int | None
    input: ModelInput
    outputs: tuple[OutputSpec, ...]
    states: list[ModelState]

    @classmethod
    def of(cls, manifest: Manifest, engine: str) -> ModelResponse:
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
            ),
            outputs=manifest.outputs,
            states=[ModelState.of(spec) for spec in manifest.states],
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
        real_rows=mode_of(manifest).real_rows(prediction.steps, prediction.rows, manifest),
    ).model_dump_json(exclude_none=True)


def state_body(view: StateView, manifest: Manifest) -> StateResponse:
    return StateResponse(
        user_id=view.user_id,
        model=ModelRef(name=manifest.name, version=view.model_version),
        steps=view.steps,
        updated_at=view.updated_at,
        expires_at=view.expires_at,
    )
