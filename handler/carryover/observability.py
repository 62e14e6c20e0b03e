"""Powertools Logger and Metrics, created once and shared by every module.

Tracing is opt-in (`TRACING=true`): only then is the X-Ray SDK imported (see `traced`), which costs about a
third of a second of every cold start.
"""

import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

NAMESPACE = SERVICE = "carryover"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The service's own metrics (CloudWatch EMF, dimension service=carryover); template.yaml alarms on the first two.
STORE_UNAVAILABLE = "StoreUnavailable"  # a request answered 503: DynamoDB unreachable or refusing
WRITE_CONFLICTS = "StateWriteConflicts"  # a conditional write lost to another writer (retried)
TIMESTEPS = "Timesteps"  # timesteps applied

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Routes that read (GET /model, /health, ...) emit no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def with_metrics(handler: Handler) -> Handler:
    """`handler` flushing its metrics after each invocation (CloudWatch EMF on stdout). With
    POWERTOOLS_METRICS_DISABLED they are dropped instead: Powertools would keep them and print every 100th."""
    if not is_metrics_disabled():
        flushed: Handler = metrics.log_metrics(handler)
        return flushed

    def dropping(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return handler(event, context)
        finally:
            metrics.clear_metrics()

    return dropping


def traced(handler: Handler) -> Handler:
    """`handler` under Powertools Tracer: a segment per invocation, DynamoDB calls as subsegments. Responses
    are not recorded: they hold the model's outputs."""
    from aws_lambda_powertools import Tracer  # the class is light; making one imports the X-Ray SDK

    wrapped: Handler = Tracer(service="carryover").capture_lambda_handler(handler, capture_response=False)
    return wrapped
