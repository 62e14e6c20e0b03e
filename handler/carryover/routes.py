"""The HTTP layer: API Gateway HTTP API routes over the prediction service."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from carryover.config import Settings
from carryover.errors import ApiError, Forbidden, InvalidJson, MethodNotAllowed, NotFound, StoreUnavailable
from carryover.observability import STORE_UNAVAILABLE, logger, metrics, traced, with_metrics
from carryover.schemas import ModelResponse, PredictRequest, parse_idempotency_key, parse_user_id
from carryover.service import PredictionService
from carryover.state_store import Unavailable

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
DEADLINE_MARGIN_S = 1.0  # left of the Lambda's time when retries stop, to answer in time
# Every route: its path as OpenAPI writes it, and its methods. The resolver's routes, the 405 answers, the
# OpenAPI document and template.yaml's routes all follow this table (the tests check that they do).
ROUTES: dict[str, tuple[str, ...]] = {
    "/users/{user_id}/predict": ("POST",),
    "/users/{user_id}/state": ("GET", "DELETE"),
    "/model": ("GET",),
    "/health": ("GET",),
}
_PATTERNS = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), methods) for path, methods in ROUTES.items()]


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods a path takes; none for a path that is no route."""
    return next((methods for pattern, methods in _PATTERNS if pattern.match(path)), ())


def _json(status: int, body: BaseModel | dict[str, Any] | str, headers: dict[str, str] | None = None) -> Response:
    payload = body.model_dump_json() if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload, headers=headers)


def create_lambda_handler(service: PredictionService, settings: Settings) -> LambdaHandler:
    """One handler per Lambda instance: the resolver holds the current event, so it serves one at a time."""
    app = APIGatewayHttpResolver()
    model = ModelResponse.of(service.manifest, service.engine.name)

    def caller(raw_user_id: str) -> str:
        """The path's user, who must be the token's subject when API Gateway checks JWTs."""
        user_id = parse_user_id(raw_user_id)
        if settings.auth_mode == "JWT":
            claims = app.current_event.request_context.authorizer.jwt_claim or {}
            if claims.get("sub") != user_id:
                raise Forbidden(f"user {user_id!r}: the token's subject may only use its own state")
        return user_id

    @app.post("/users/<user_id>/predict")
    def predict(user_id: str) -> Response:
        user = caller(user_id)
        key = parse_idempotency_key(app.current_event.headers.get("idempotency-key"))
        try:
            body = app.current_event.decoded_body
        except ValueError:  # base64 that does not decode, or bytes that are not UTF-8
            raise InvalidJson("request body: expected UTF-8 JSON (base64-encoded when isBase64Encoded)") from None
        request = PredictRequest.parse(body, service.manifest, settings.max_timesteps, settings.max_body_bytes)
        deadline = time.monotonic() + app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_S
        prediction = service.predict(user, request, key, deadline)
        return _json(200, prediction.body, {"Idempotent-Replayed": "true"} if prediction.replayed else None)

    @app.get("/users/<user_id>/state")
    def get_state(user_id: str) -> Response:
        return _json(200, service.state(caller(user_id)))

    @app.delete("/users/<user_id>/state")
    def delete_state(user_id: str) -> Response:
        service.delete(caller(user_id))
        return Response(status_code=204)

    @app.get("/model")
    def get_model() -> Response:
        return _json(200, model)

    @app.get("/health")
    def health() -> Response:
        return _json(200, service.health())

    @app.not_found
    def not_found(_: Exception) -> Response:
        method, path = app.current_event.request_context.http.method, app.current_event.path
        allowed = allowed_methods(path)
        if allowed:
            error: ApiError = MethodNotAllowed(f"{path} takes {', '.join(allowed)}, not {method}", allowed)
        else:
            error = NotFound(f"no route for {method} {path}")
        return _json(error.status, error.body(), error.headers() or None)

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
        return _json(error.status, error.body(), error.headers() or None)

    @app.exception_handler(Unavailable)
    def store_unavailable(_: Unavailable) -> Response:
        metrics.add_metric(name=STORE_UNAVAILABLE, unit=MetricUnit.Count, value=1)
        return api_error(StoreUnavailable(StoreUnavailable.MESSAGE))

    @app.exception_handler(Exception)
    def unexpected(_: Exception) -> Response:
        logger.exception("unhandled error")
        return _json(500, ApiError("internal error").body())

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return traced(handler) if settings.tracing else handler
