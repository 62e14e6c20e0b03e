"""Powertools Logger and Metrics, created once and shared by every module.

Tracing is opt-in (`TRACING=true`): only then is the X-Ray SDK imported (see `traced`), which costs about a
third of a second of every cold start.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

NAMESPACE = SERVICE = "carryover"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The service's own metrics (CloudWatch EMF, dimension service=carryover); template.yaml alarms on the first two.
STORE_UNAVAILABLE = "StoreUnavailable"  # a request answered 503: DynamoDB unreachable or refusing
WRITE_CONFLICTS = "StateWriteConflicts"  # a conditional write lost to another writer (retried)
TIMESTEPS = "Timesteps"  # timesteps applied

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def traced(handler: Handler) -> Handler:
    """`handler` under Powertools Tracer: a segment per invocation, DynamoDB calls as subsegments. Responses
    are not recorded: they hold the model's outputs."""
    from aws_lambda_powertools import Tracer  # the class is light; making one imports the X-Ray SDK

    wrapped: Handler = Tracer(service="carryover").capture_lambda_handler(handler, capture_response=False)
    return wrapped
