"""The request path: read the user's state, run the engine from it, write the new state conditionally.

A request is applied exactly once: a conflicting write means re-read and recompute; a write whose outcome was
unknown is recognised by its write id on the re-read; a request with an idempotency key has its response
recorded in the same conditional write as the state, so a repeat finds it there.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit

from carryover.bundle import ModelBundle
from carryover.config import Settings
from carryover.errors import IdempotencyKeyReused, NotFound, StateConflict, StateIncompatible
from carryover.observability import logger, metrics, tracer
from carryover.schemas import ModelRef, PredictRequest, PredictResponse, StateOrigin, StateResponse
from carryover.state_store import NewState, Receipt, StateStore, StoreSettings, StoredState, WriteConflict, dynamodb_client

BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.2
IncompatiblePolicy = Literal["reset", "reject"]


@dataclass(frozen=True)
class _Start:
    state: list[np.ndarray]
    steps: int
    origin: StateOrigin


@dataclass(frozen=True)
class Prediction:
    body: str  # the response body, exactly as first sent
    replayed: bool  # True when an earlier request with the same idempotency key produced it


class PredictionService:
    def __init__(
        self,
        bundle: ModelBundle,
        store: StateStore,
        conflict_retries: int,
        on_incompatible: IncompatiblePolicy = "reset",
    ) -> None:
        self.manifest = bundle.manifest
        self.engine = bundle.engine
        self._store = store
        self._retries = conflict_retries
        self._on_incompatible = on_incompatible
        self._model = ModelRef(name=self.manifest.name, version=self.manifest.version)

    def _start(self, user_id: str, stored: StoredState | None, reset: bool) -> _Start:
        if not self._store.is_live(stored):
            return _Start(self.manifest.zero_state(), 0, "new")
        if reset:
            return _Start(self.manifest.zero_state(), 0, "reset")
        compatible = stored.readable and stored.model_version == self.manifest.version
        state = self.manifest.unpack_state(stored.blob) if compatible else None
        if state is not None:
            return _Start(state, stored.steps, "continued")
        if self._on_incompatible == "reject":
            raise StateIncompatible(
                f"user {user_id!r}: the saved state does not fit model {self.manifest.name} {self.manifest.version}; "
                'send "reset": true to start over'
            )
        logger.info("incompatible state reset", extra={"user_id": user_id, "readable": stored.readable})
        return _Start(self.manifest.zero_state(), 0, "reset")

    @staticmethod
    def _receipt(stored: StoredState | None, key: str | None) -> Receipt | None:
        if key is None or stored is None:
            return None
        return next((receipt for receipt in stored.receipts if receipt.key == key), None)

    @tracer.capture_method
    def predict(
        self, user_id: str, request: PredictRequest, idempotency_key: str | None = None, deadline: float = float("inf")
    ) -> Prediction:
        """Applies the request on top of the user's state, once. `deadline` (time.monotonic) ends retrying."""
        inputs, fingerprint = request.array, request.fingerprint()
        attempted: dict[str, str] = {}  # write id -> response body, for writes whose outcome is not known
        for attempt in range(self._retries + 1):
            stored = self._store.load(user_id)
            if stored is not None and stored.write_id in attempted:
                return Prediction(attempted[stored.write_id], replayed=False)  # our write landed after all
            receipt = self._receipt(stored, idempotency_key)
            if receipt is not None:
                if receipt.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} was used with another request body")
                return Prediction(receipt.response, replayed=True)
            start = self._start(user_id, stored, request.reset)
            result = self.engine.run(inputs, start.state)
            steps = start.steps + len(inputs)
            outputs = {name: rows.tolist() for name, rows in result.outputs.items()}
            body = PredictResponse(
                user_id=user_id, model=self._model, outputs=outputs, steps=steps, state=start.origin
            ).model_dump_json()
            new_receipt = Receipt(idempotency_key, fingerprint, body, datetime.now(UTC)) if idempotency_key else None
            new = NewState(self.manifest.version, self.manifest.pack_state(result.state), steps, new_receipt)
            try:
                self._store.save(user_id, new, stored)
            except WriteConflict as conflict:
                attempted[conflict.write_id] = body
                metrics.add_metric(name="StateWriteConflicts", unit=MetricUnit.Count, value=1)
                pause = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
                continue
            metrics.add_metric(name="Timesteps", unit=MetricUnit.Count, value=len(inputs))
            logger.debug("state saved", extra={"user_id": user_id, "steps": steps, "attempts": attempt + 1})
            return Prediction(body, replayed=False)
        raise StateConflict(f"user {user_id!r}: the state kept changing during {len(attempted)} attempts; retry")

    def state(self, user_id: str) -> StateResponse:
        stored = self._store.load(user_id)
        if not self._store.is_live(stored):
            raise NotFound(f"user {user_id!r} has no saved state for model {self.manifest.name!r}")
        if not stored.readable:
            raise StateIncompatible(f"user {user_id!r}: the saved state cannot be read")
        return StateResponse(
            user_id=user_id,
            model=ModelRef(name=self.manifest.name, version=stored.model_version),
            steps=stored.steps,
            updated_at=stored.updated_at,
            expires_at=stored.expires_at,
        )

    def delete(self, user_id: str) -> None:
        self._store.delete(user_id)


def create_service(settings: Settings, bundle: ModelBundle | None = None, client: Any = None) -> PredictionService:
    """Loads the model and connects the store: the work of a cold start. Tests pass a loaded bundle or a client."""
    bundle = bundle or ModelBundle.load(settings.model_bundle, settings.engine)
    client = client or dynamodb_client(
        str(settings.dynamodb_endpoint) if settings.dynamodb_endpoint else None,
        connect_timeout=settings.dynamodb_connect_timeout,
        read_timeout=settings.dynamodb_read_timeout,
        max_attempts=settings.dynamodb_max_attempts,
    )
    store_settings = StoreSettings(
        ttl=timedelta(days=settings.state_ttl_days),
        receipt_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        max_receipts=settings.idempotency_keys,
    )
    store = StateStore(client, settings.table_name, bundle.manifest.name, store_settings)
    return PredictionService(bundle, store, settings.conflict_retries, settings.state_on_incompatible)
