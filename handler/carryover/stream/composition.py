"""The stream function's parts, apart from the HTTP function's: its cold start alone imports the stream path."""

from __future__ import annotations

from carryover.bundle import ModelBundle
from carryover.composition import build_service, build_store
from carryover.config import ConfigurationError, Settings
from carryover.core.batch import BatchService
from carryover.core.service import PredictionService
from carryover.store import StateStore
from carryover.store.dynamodb import Clock, utc_now
from carryover.stream.lambda_handler import StreamConsumer, StreamHandler, create_stream_handler
from carryover.stream.sinks import Answers, Failures, QueueFailures, StreamAnswers


def build_consumer(
    settings: Settings, service: PredictionService, store: StateStore, failures: Failures, answers: Answers | None
) -> StreamConsumer:
    batches = BatchService(service, store, settings.conflict_retries)
    return StreamConsumer(batches, service.manifest, settings.max_timesteps, failures, answers)


def build_stream_handler(settings: Settings, clock: Clock = utc_now) -> StreamHandler:
    """The stream function's handler as its cold start builds it: DynamoDB, the failure queue, the answers
    stream."""
    from botocore.session import Session

    if not settings.failure_queue_url:
        raise ConfigurationError("FAILURE_QUEUE_URL: the stream function needs its failure queue")
    bundle = ModelBundle.load(settings.model_bundle, settings.engine)
    store = build_store(settings, bundle, clock=clock)
    service = build_service(settings, bundle, clock=clock, store=store)  # checks the item fits first
    session = Session()
    failures = QueueFailures(session.create_client("sqs"), settings.failure_queue_url)
    kinesis = str(settings.kinesis_endpoint) if settings.kinesis_endpoint else None
    answers = (
        StreamAnswers(session.create_client("kinesis", endpoint_url=kinesis), settings.answers_stream)
        if settings.answers_stream
        else None
    )
    return create_stream_handler(build_consumer(settings, service, store, failures, answers), settings.tracing)
