"""The stream function's parts, apart from the HTTP function's: its cold start alone imports the stream path."""

from __future__ import annotations

from carryover.bundle import ModelBundle
from carryover.composition import build_service, build_store
from carryover.config import ConfigurationError, Settings
from carryover.core.service import PredictionService
from carryover.store import Clock
from carryover.store.dynamodb import utc_now
from carryover.stream.lambda_handler import StreamConsumer, StreamHandler, create_stream_handler
from carryover.stream.records import RecordRules
from carryover.stream.sinks import Answers, Failures, QueueFailures, StreamAnswers


def build_consumer(
    settings: Settings, service: PredictionService, failures: Failures, answers: Answers | None
) -> StreamConsumer:
    """The stream way in on `service`'s apply path. A record's answer is kept in the item until published (and its
    rows logged with the write), so a record may carry at most the rows that fit beside the states (refused at cold
    start when none does)."""
    room, manifest = service.applier.planner.room, service.manifest
    if room.most_rows(manifest, room.stream_answer) < 1:
        raise ConfigurationError(
            f"model {manifest.name}: the answer and rows of one timestep do not fit a DynamoDB item beside its "
            f"states and settings ({room.stream_answer} bytes left for answers, {room.logged} for rows): records "
            "could never be applied"
        )
    rules = RecordRules(manifest, settings.max_timesteps, room)
    return StreamConsumer(service.applier, service.bundle, rules, failures, answers)


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
    return create_stream_handler(build_consumer(settings, service, failures, answers), settings.tracing)
