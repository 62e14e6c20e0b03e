"""The HTTP layer: API Gateway HTTP API routes over the prediction service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from carryover.errors import ApiError, NotFound
from carryover.observability import logger, metrics, tracer
from carryover.schemas import ModelResponse, PredictRequest, parse_user_id
from carryover.service import PredictionService

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _json(status: int, body: BaseModel | dict[str, Any]) -> Response:
    payload = body.model_dump_json() if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload)


def create_lambda_handler(service: PredictionService, max_timesteps: int) -> LambdaHandler:
    """One handler per Lambda instance: the resolver holds the current event, so it serves one at a time."""
    app = APIGatewayHttpResolver()
    model = ModelResponse.of(service.manifest, service.engine.name)

    @app.post("/users/<user_id>/predict")
    def predict(user_id: str) -> Response:
        user = parse_user_id(user_id)
        request = PredictRequest.parse(app.current_event.decoded_body, service.manifest, max_timesteps)
        return _json(200, service.predict(user, request.array(), request.reset))

    @app.get("/users/<user_id>/state")
    def get_state(user_id: str) -> Response:
        return _json(200, service.state(parse_user_id(user_id)))

    @app.delete("/users/<user_id>/state")
    def delete_state(user_id: str) -> Response:
        service.delete(parse_user_id(user_id))
        return Response(status_code=204)

    @app.get("/model")
    def get_model() -> Response:
        return _json(200, model)

    @app.not_found
    def not_found(_: Exception) -> Response:
        event = app.current_event
        return _json(404, NotFound(f"no route for {event.request_context.http.method} {event.path}").body())

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
        return _json(error.status, error.body())

    @app.exception_handler(Exception)
    def unexpected(_: Exception) -> Response:
        logger.exception("unhandled error")
        return _json(500, ApiError("internal error").body())

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler
