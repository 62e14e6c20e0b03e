"""The request path: read the user's state, run the engine from it, write the new state conditionally."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit

from carryover.bundle import ModelBundle
from carryover.config import Settings
from carryover.errors import NotFound, StateConflict
from carryover.observability import logger, metrics, tracer
from carryover.schemas import ModelRef, PredictResponse, StateOrigin, StateResponse
from carryover.state_store import StateStore, StoredState, WriteConflict, dynamodb_client

BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.2


@dataclass(frozen=True)
class _Start:
    state: list[np.ndarray]
    steps: int
    origin: StateOrigin


class PredictionService:
    def __init__(self, bundle: ModelBundle, store: StateStore, conflict_retries: int) -> None:
        self.manifest = bundle.manifest
        self.engine = bundle.engine
        self._store = store
        self._retries = conflict_retries
        self._model = ModelRef(name=self.manifest.name, version=self.manifest.version)

    def _start(self, stored: StoredState | None, reset: bool) -> _Start:
        if not self._store.is_live(stored):
            return _Start(self.manifest.zero_state(), 0, "new")
        compatible = not reset and stored.model_version == self.manifest.version
        state = self.manifest.unpack_state(stored.blob) if compatible else None
        if state is None:
            return _Start(self.manifest.zero_state(), 0, "reset")
        return _Start(state, stored.steps, "continued")

    @tracer.capture_method
    def predict(self, user_id: str, inputs: np.ndarray, reset: bool) -> PredictResponse:
        """Applies `inputs` on top of the user's state; on a concurrent write, re-reads and recomputes."""
        for attempt in range(self._retries + 1):
            stored = self._store.load(user_id)
            start = self._start(stored, reset)
            result = self.engine.run(inputs, start.state)
            steps = start.steps + len(inputs)
            try:
                self._store.save(user_id, self.manifest.version, self.manifest.pack_state(result.state), steps, stored)
            except WriteConflict:
                metrics.add_metric(name="StateWriteConflicts", unit=MetricUnit.Count, value=1)
                time.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
                continue
            metrics.add_metric(name="Timesteps", unit=MetricUnit.Count, value=len(inputs))
            logger.debug("state saved", extra={"user_id": user_id, "steps": steps, "attempts": attempt + 1})
            outputs = {name: rows.tolist() for name, rows in result.outputs.items()}
            return PredictResponse(user_id=user_id, model=self._model, outputs=outputs, steps=steps, state=start.origin)
        raise StateConflict(f"user {user_id!r}: state kept changing during {self._retries + 1} attempts; retry")

    def state(self, user_id: str) -> StateResponse:
        stored = self._store.load(user_id)
        if not self._store.is_live(stored):
            raise NotFound(f"user {user_id!r} has no saved state for model {self.manifest.name!r}")
        return StateResponse(
            user_id=user_id,
            model=ModelRef(name=self.manifest.name, version=stored.model_version),
            steps=stored.steps,
            updated_at=stored.updated_at,
            expires_at=stored.expires_at,
        )

    def delete(self, user_id: str) -> None:
        self._store.delete(user_id)


def create_service(settings: Settings) -> PredictionService:
    """Loads the model and connects the store: the work of a cold start."""
    bundle = ModelBundle.load(settings.model_bundle, settings.engine)
    endpoint = str(settings.dynamodb_endpoint) if settings.dynamodb_endpoint else None
    store = StateStore(
        dynamodb_client(endpoint),
        settings.table_name,
        bundle.manifest.name,
        timedelta(days=settings.state_ttl_days),
    )
    return PredictionService(bundle, store, settings.conflict_retries)
