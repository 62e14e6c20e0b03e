"""Powertools Logger and Metrics, created once and shared by every module.

Tracing is opt-in (`TRACING=true`): only then is the X-Ray SDK imported (see `traced`), which costs about a
third of a second of every cold start.
"""

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

NAMESPACE = SERVICE = "carryover"
logger = Logger(service=SERVICE)
# Its lines go to its own handler alone: a handler another library gives the root logger later (absl's first log
# calls logging.basicConfig(); the LiteRT converter logs through absl) would print each of them a second time.
logging.getLogger(SERVICE).propagate = False
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The service's own metrics (CloudWatch EMF, dimension service=carryover); template.yaml alarms on the first two.
STORE_UNAVAILABLE = "StoreUnavailable"  # a request answered 503: DynamoDB unreachable or refusing
WRITE_CONFLICTS = "StateWriteConflicts"  # a conditional write lost to another writer (retried)
TIMESTEPS = "Timesteps"  # timesteps applied
STREAM_RECORDS_APPLIED = "StreamRecordsApplied"  # stream records applied to users' states
STREAM_RECORDS_REFUSED = "StreamRecordsRefused"  # stream records sent to the failure queue
DIVERGENCE = "VersionDivergence"  # the largest difference between the outputs of a bundle's two models
INCOMPLETE = "IncompleteState"  # an answer from a state that has not seen every row (CompanionIncompleteState)
# Where each request's state started, per model: State<Origin> for the model that answers (StateNew,
# StateContinued, StateReset, StateReplayed, StateCaughtUp), Companion<...> for the bundle's other model
# (CompanionStateWarmed while it learns a user's context, ...).
ORIGIN_METRICS = {
    origin: "State" + origin.title().replace("_", "")
    for origin in ("new", "continued", "reset", "replayed", "caught_up", "warmed")
}

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Routes that read (GET /model, /health, ...) emit no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def add_metric(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    """One value of a metric, unless metrics are off (POWERTOOLS_METRICS_DISABLED): Powertools prints a metric's
    values once it holds 100 of them (a stream batch of many users), even then."""
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def with_metrics(handler: Handler) -> Handler:
    """`handler` flushing its metrics after each invocation (CloudWatch EMF on stdout); with metrics off,
    `add_metric` keeps none and nothing is printed."""
    flushed: Handler = metrics.log_metrics(handler)
    return flushed


def traced(handler: Handler) -> Handler:
    """`handler` under Powertools Tracer: a segment per invocation, DynamoDB calls as subsegments. Responses
    are not recorded: they hold the model's outputs."""
    from aws_lambda_powertools import Tracer  # the class is light; making one imports the X-Ray SDK

    wrapped: Handler = Tracer(service="carryover").capture_lambda_handler(handler, capture_response=False)
    return wrapped


def count_origins(origins: Sequence[str], partial: Sequence[bool]) -> None:
    """One count per model of where its state started, and of those whose state has not seen every row of the
    user's stream (`IncompleteState`): the first answered, the others are its companions."""
    for index, (origin, incomplete) in enumerate(zip(origins, partial, strict=True)):
        prefix = "" if index == 0 else "Companion"
        add_metric(prefix + ORIGIN_METRICS[origin], 1)
        if incomplete:
            add_metric(prefix + INCOMPLETE, 1)


def record_divergence(user_id: str, answered: Mapping[str, Any], companion: Mapping[str, Any]) -> None:
    """How far the companion's outputs are from the answering model's on the same rows, when they are outputs of
    the same names and shapes (a retrained model); the pair itself only at DEBUG."""
    if set(answered) != set(companion) or any(np.shape(answered[n]) != np.shape(companion[n]) for n in answered):
        return
    largest = max(float(np.max(np.abs(np.asarray(answered[n]) - np.asarray(companion[n])))) for n in answered)
    add_metric(DIVERGENCE, largest, MetricUnit.NoUnit)
    logger.debug("versions compared", extra={"user_id": user_id, "divergence": largest})
