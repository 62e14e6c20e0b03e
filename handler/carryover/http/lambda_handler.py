"""The Lambda handler for API Gateway's HTTP API: Powertools' resolver with the routes of `routes.ROUTES`,
every error answered in the one JSON shape (`errors`), one EMF metrics line per invocation."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.config import Settings
from carryover.core.service import PredictionService
from carryover.errors import InvalidRequest, NotFound, ServiceError
from carryover.http import errors
from carryover.http.errors import MethodNotAllowed
from carryover.http.routes import ROUTES, Call, Handlers, Route, allowed_methods, json_response
from carryover.observability import STORE_UNAVAILABLE, add_metric, logger, traced, with_metrics
from carryover.requests import USER_ID_RULE

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
DEADLINE_MARGIN_S = 1.0  # left of the Lambda's time when retries stop, to answer in time


def refusal(error: ServiceError) -> Response[str]:
    """A refused request, in the one error shape."""
    logger.info("request refused", extra={"status": errors.status(error), "code": error.code})
    if error.code == "store_unavailable":
        add_metric(STORE_UNAVAILABLE, 1)
    return json_response(errors.status(error), errors.body(error), errors.headers(error) or None)


def unexpected(_: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return refusal(ServiceError("internal error"))


class InstanceResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, holding the event it resolves itself. Powertools keeps it on its base class,
    shared by every resolver in the process: right on Lambda, which gives a process one event at a time; wrong
    for the local server, whose instances share one process, where a request would read another's path and body."""

    _event: APIGatewayProxyEventV2
    _context: LambdaContext

    @property  # type: ignore[override]
    def current_event(self) -> APIGatewayProxyEventV2:
        return self._event

    @current_event.setter
    def current_event(self, event: APIGatewayProxyEventV2) -> None:
        self._event = event

    @property
    def lambda_context(self) -> LambdaContext:
        return self._context

    @lambda_context.setter
    def lambda_context(self, context: LambdaContext) -> None:
        self._context = context

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        self._context = context
        return super().resolve(event, context)

    def _to_proxy_event(self, event: dict[str, Any]) -> APIGatewayProxyEventV2:
        """The event, kept on this instance; made once (the resolver reads it, and so do the routes)."""
        self._event = APIGatewayProxyEventV2(event, self._json_body_deserializer)
        return self._event


def _answering(app: APIGatewayHttpResolver, route: Route, handlers: Handlers) -> Callable[..., Response[str]]:
    """The resolver's function for `route`: its `Call` built from the current event."""

    def answer(**params: str) -> Response[str]:
        remaining_s = app.lambda_context.get_remaining_time_in_millis() / 1000
        call = Call(app.current_event, params, time.monotonic() + remaining_s - DEADLINE_MARGIN_S)
        return route.handler(handlers, call)

    return answer


def _no_route(app: APIGatewayHttpResolver) -> Callable[[Exception], Response[str]]:
    def answer(_: Exception) -> Response[str]:
        method, path = app.current_event.request_context.http.method, app.current_event.path
        allowed = allowed_methods(path)
        if method in allowed:  # the route's, but its user id has characters the resolver's path pattern refuses
            return refusal(InvalidRequest(f"user_id: expected {USER_ID_RULE}"))
        if allowed:
            return refusal(MethodNotAllowed(f"{path} takes {', '.join(allowed)}, not {method}", allowed))
        return refusal(NotFound(f"no route for {method} {path}"))

    return answer


def event_problem(event: Any) -> str | None:
    """Why `event` is not an HTTP API request (payload format 2.0) this handler can answer, or None."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    if "httpMethod" in event or event.get("version") == "1.0":
        return (
            "this is an API Gateway REST API or payload format 1.0 event; the function answers HTTP API events of "
            "payload format 2.0 (template.yaml's HttpApi)"
        )
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if (
        not isinstance(http, dict)
        or not isinstance(http.get("method"), str)
        or not isinstance(event.get("rawPath"), str)
    ):
        return "the event has no requestContext.http.method or rawPath: expected an HTTP API event (payload format 2.0)"
    if event.get("body") is not None and not isinstance(event["body"], str):
        return "body: expected the request body as a string (a JSON object written as text), as API Gateway sends it"
    return None


def _event_refusal(problem: str) -> dict[str, Any]:
    """An event the resolver cannot take, answered in the API's error shape as API Gateway expects a response."""
    error = InvalidRequest(problem)
    logger.info("event refused", extra={"status": errors.status(error), "code": error.code})
    return {
        "statusCode": errors.status(error),
        "headers": {"Content-Type": "application/json"},
        "body": errors.body(error).model_dump_json(),
        "isBase64Encoded": False,
    }


def create_lambda_handler(service: PredictionService, settings: Settings) -> LambdaHandler:
    """One handler per Lambda instance: its resolver holds the current event, so it serves one at a time."""
    app = InstanceResolver()
    handlers = Handlers(service, settings, service.engine.name)
    for route in ROUTES:
        app.route(route.rule, method=route.method)(_answering(app, route, handlers))
    app.not_found(_no_route(app))
    app.exception_handler(ServiceError)(refusal)
    app.exception_handler(Exception)(unexpected)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        problem = event_problem(event)
        return _event_refusal(problem) if problem else app.resolve(event, context)

    return traced(handler) if settings.tracing else handler
