"""The HTTP API described as OpenAPI 3.1, generated from the pydantic models the handler validates and answers
with, and from the routes declared in `routes.py`.

    python -m carryover.http.openapi > openapi.json     # the committed, model-independent document

With a manifest and settings, the document also states what the served model takes: its feature count, its
outputs, the most timesteps a request may carry.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from pydantic import BaseModel

from carryover.http.errors import ErrorResponse
from carryover.http.routes import ROUTES, Route
from carryover.http.schemas import HealthResponse, ModelResponse, PredictResponse, StateResponse
from carryover.manifest import Manifest
from carryover.requests import FLOAT32_MAX, IDEMPOTENCY_KEY, USER_ID, USER_ID_RULE, PredictRequest

TITLE = "carryover"
VERSION = "1"
_MODELS: tuple[type[BaseModel], ...] = (
    PredictRequest,
    PredictResponse,
    StateResponse,
    ModelResponse,
    HealthResponse,
    ErrorResponse,
)


def _components(manifest: Manifest | None, max_timesteps: int | None) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        mode: Literal["validation", "serialization"] = "validation" if model is PredictRequest else "serialization"
        schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    number: dict[str, Any] = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    row: dict[str, Any] = {"type": "array", "items": number}
    rows: dict[str, Any] = schemas["PredictRequest"]["properties"]["inputs"]
    rows.update(items=row, minItems=1)
    if manifest is not None and manifest.input.vocabulary is not None:
        token = {"type": "integer", "minimum": 0, "maximum": manifest.input.vocabulary - 1}
        row.update(items=token, minItems=1, maxItems=1)
        rows.update(items={"anyOf": [row, token]})  # [[12], [7]] or [12, 7]
    elif manifest is not None:
        if manifest.input.shape is not None:  # a frame: arrays nested as deep as its shape, numbers inside
            row = number
            for size in reversed(manifest.input.shape):
                row = {"type": "array", "items": row, "minItems": size, "maxItems": size}
            rows.update(items=row)
        else:
            row.update(minItems=manifest.input.features, maxItems=manifest.input.features)
        schemas["PredictResponse"]["properties"]["outputs"] = _outputs(manifest)
    if max_timesteps is not None:
        rows["maxItems"] = max_timesteps
    return schemas


def _outputs(manifest: Manifest) -> dict[str, Any]:
    """A response's `outputs`: each of the model's outputs by name, rows of its units."""
    rows = {
        spec.name: {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}, "minItems": spec.units, "maxItems": spec.units},
        }
        for spec in manifest.outputs
    }
    names = [spec.name for spec in manifest.outputs]
    return {"type": "object", "properties": rows, "required": names, "additionalProperties": False}


def _content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    described = {
        400: "A bad request: the message names the field and what was expected; nothing changed.",
        403: "JWT mode: another user's state.",
        404: "No saved state, or no such route.",
        405: "A known path with another method (see Allow).",
        409: "state_conflict, idempotency_key_reused, already_applied, outcome_unknown or state_incompatible.",
        413: "The body is larger than MAX_BODY_BYTES.",
        422: "Allowed by the schema but not applicable: the model overflows on these values, or a keyed response too "
        "large to record. Nothing changed.",
        500: "An unexpected failure, without internals.",
        503: "The state store is unavailable: retry after Retry-After, with the same Idempotency-Key.",
    }
    responses: dict[str, Any] = {}
    for status in statuses:
        responses[str(status)] = {"description": described[status], "content": _content("ErrorResponse")}
        if status == 503:
            responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if status == 405:
            responses["405"]["headers"] = {"Allow": {"schema": {"type": "string"}}}
    return responses


def _parameter(name: str, where: str, pattern: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string", "pattern": f"^{pattern}$"},
        "description": description,
    }


_USER = _parameter("user_id", "path", USER_ID.pattern, f"{USER_ID_RULE} (percent-encoding is decoded first).")
_KEY = _parameter(
    "Idempotency-Key",
    "header",
    IDEMPOTENCY_KEY.pattern,
    "Applies the request once: a repeat with the same key and request returns the first answer.",
)
_PARAMETERS = {"user_id": _USER, "Idempotency-Key": _KEY}
_STATE_LINK = {"operationId": "getState", "parameters": {"user_id": "$request.path.user_id"}}


def _operation(route: Route) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": route.answer.description}
    if route.answer.headers:
        answer["headers"] = route.answer.headers
    if route.answer.schema:
        answer["content"] = _content(route.answer.schema)
    if route.answer.links_to_state:
        answer["links"] = {"GetState": _STATE_LINK}
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    if route.parameters:
        operation["parameters"] = [_PARAMETERS[name] for name in route.parameters]
    if route.request_body:
        operation["requestBody"] = {"required": True, "content": _content(route.request_body)}
    operation["responses"] = {str(route.answer.status): answer, **_errors(*route.errors)}
    return operation


def document(manifest: Manifest | None = None, max_timesteps: int | None = None) -> dict[str, Any]:
    """The OpenAPI document; with a manifest and settings, specific to the served model."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = copy.deepcopy(_operation(route))
    description = "Stateful sequence models served per user, with each user's state in DynamoDB."
    if manifest is not None:
        shape = manifest.input.shape
        step = f"a frame of shape {list(shape)}" if shape else f"{manifest.input.features} features"
        description += f" Serving {manifest.name} {manifest.version}: {step} per timestep."
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": description},
        "paths": paths,
        "components": {"schemas": _components(manifest, max_timesteps)},
    }


def render(manifest: Manifest | None = None, max_timesteps: int | None = None) -> str:
    return json.dumps(document(manifest, max_timesteps), indent=2, sort_keys=False) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
