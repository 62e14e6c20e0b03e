"""What a request asks, whatever the way in (an HTTP body, a stream record): its rows, `reset`, the user and the
idempotency key, and the rules each must meet."""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from carryover.core.domain import digest
from carryover.errors import InvalidJson, InvalidRequest
from carryover.manifest import Manifest

# A user id is a path segment and a key: no "/", "%", space or other character that could reach another user's
# state. "|" is in the subjects Auth0 issues ("auth0|64f..."); Cognito (a UUID), Okta ("00u..."), Entra ID
# (base64url) and Google (digits) issue subjects of the others.
USER_ID = re.compile(r"[A-Za-z0-9._:@|-]{1,128}")
USER_ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ : @ | -"
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,128}")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def counted(number: int, thing: str) -> str:
    """A count in words: 1 feature, 8 features."""
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def parse_user_id(user_id: str) -> str:
    if not USER_ID.fullmatch(user_id):
        raise InvalidRequest(f"user_id: expected {USER_ID_RULE}")
    return user_id


class PredictRequest(BaseModel):
    """Timesteps to apply on top of the user's saved state: one row of features per timestep, oldest first
    (for a token model, one id per timestep: `[12, 7, 99]` or `[[12], [7], [99]]`; for a frame model, one nested
    array per timestep, of the shape `GET /model` gives as `input.shape`); `reset` starts from zeros instead."""

    # validated with context {"features": F, "max_timesteps": M, "vocabulary": V or None, "shape": a frame's shape
    # or None} from the served model

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    inputs: list[list[float]]
    reset: bool = False

    @field_validator("inputs", mode="before")
    @classmethod
    def _flat_rows(cls, rows: Any, info: ValidationInfo) -> Any:
        """A token model takes a flat list of ids too: each id becomes a one-value row. A frame model's timesteps
        are nested arrays: each becomes the row of its values."""
        context = info.context or {}
        if context.get("vocabulary") and isinstance(rows, list):
            return [[row] if _is_number(row) else row for row in rows]
        if context.get("shape") and isinstance(rows, list):
            return [_frame_values(row, tuple(context["shape"]), index) for index, row in enumerate(rows)]
        return rows

    @field_validator("inputs")
    @classmethod
    def _shape(cls, rows: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        context = info.context or {}
        features, max_timesteps = context["features"], context["max_timesteps"]
        if not rows:
            raise ValueError("expected at least one timestep")
        if len(rows) > max_timesteps:
            raise ValueError(f"expected at most {max_timesteps} timesteps, got {len(rows)}")
        for index, row in enumerate(rows):
            if len(row) != features:
                found, expected = counted(len(row), "value"), counted(features, "feature")
                raise ValueError(f"row {index} has {found}, expected {expected}")
            if any(abs(value) > FLOAT32_MAX for value in row):
                raise ValueError(f"row {index} has a value outside the float32 range")
            vocabulary = context.get("vocabulary")
            if vocabulary and not (row[0] == int(row[0]) and 0 <= row[0] < vocabulary):
                raise ValueError(
                    f"timestep {index}: token {row[0]:g} is not an id of the vocabulary (0 to {vocabulary - 1})"
                )
        return rows

    @classmethod
    def parse(cls, body: str | None, manifest: Manifest, max_timesteps: int) -> Self:
        if not body:
            raise InvalidJson("request body: expected a JSON object")
        context = {
            "features": manifest.input.features,
            "max_timesteps": max_timesteps,
            "vocabulary": manifest.input.vocabulary,
            "shape": manifest.input.shape,
        }
        try:
            return cls.model_validate_json(body, context=context)
        except ValidationError as error:
            raise _request_error(error.errors()[0]) from None

    @cached_property
    def array(self) -> np.ndarray:
        return np.asarray(self.inputs, dtype=np.float32)

    def canonical(self) -> bytes:
        """Equal for requests that mean the same, however their JSON was written (-0.0 is 0.0)."""
        return f"{self.array.shape}|{self.reset}|".encode() + (self.array + np.float32(0)).tobytes()

    def fingerprints(self) -> frozenset[bytes]:
        """The digests a record of this request may hold: of its canonical form, and of the form item format 1
        recorded (the rows as sent, -0.0 kept)."""
        legacy = f"{self.array.shape}|{self.reset}|".encode() + self.array.tobytes()
        return frozenset({digest(self.canonical()), digest(legacy)})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _frame_values(row: Any, shape: tuple[int, ...], index: int) -> list[Any]:
    """The values of a timestep sent as a nested array of `shape`, in C order; a ValueError naming the row, the
    shape expected and where the row departs from it."""
    expected = f"row {index} must be an array of shape {list(shape)} (one frame per timestep)"
    values: list[Any] = []

    def visit(value: Any, depth: int, at: str) -> None:
        if depth == len(shape):
            if not _is_number(value):
                raise ValueError(f"row {index} at {at}: expected a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"row {index} at {at}: expected a finite number")
            if abs(value) > FLOAT32_MAX:
                raise ValueError(f"row {index} at {at}: a value outside the float32 range")
            values.append(value)
        elif not isinstance(value, list):
            raise ValueError(f"{expected}: {at or 'it'} is not an array")
        elif len(value) != shape[depth]:
            raise ValueError(f"{expected}: {at or 'it'} has length {len(value)}, expected {shape[depth]}")
        else:
            for position, item in enumerate(value):
                visit(item, depth + 1, f"{at}[{position}]")

    visit(row, 0, "")
    return values


class RecordBody(PredictRequest):
    """A stream record: a request with its user, `{"user_id": ..., "inputs": [...], "reset": false}`."""

    user_id: str


def _request_error(error: Any) -> InvalidRequest:
    if error["type"] == "json_invalid":
        return InvalidJson(f"request body: {error['msg']}")
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    field = field.lstrip(".") or "request body"
    messages = {
        "extra_forbidden": "unknown field",
        "missing": "required field is missing",
        "float_type": "expected a number",
        "finite_number": "expected a finite number",
        "list_type": "expected a list",
        "bool_type": "expected true or false",
        "model_type": "expected a JSON object",
    }
    message = messages.get(error["type"], str(error["msg"]).removeprefix("Value error, "))
    return InvalidRequest(f"{field}: {message}")
