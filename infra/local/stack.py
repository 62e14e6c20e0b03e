"""The local stack: the Lambda handler behind the local HTTP API, its state in SQLite (the default) or in any
DynamoDB-compatible endpoint."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from carryover.bundle import ModelBundle
from carryover.composition import build_client, build_service, build_store, lifetimes, states_in_objects
from carryover.config import Settings
from carryover.core.service import PredictionService
from carryover.http.lambda_handler import create_lambda_handler
from carryover.manifest import Manifest
from carryover.store import StateStore
from carryover.store.dynamodb import utc_now
from carryover.store.sqlite import Durability, SQLiteBlobs, SQLiteStateStore
from carryover.stream.composition import build_consumer
from carryover.stream.lambda_handler import StreamHandler, create_stream_handler
from carryover.stream.sinks import FileFailures, StreamAnswers
from infra.local.pages import api_pages
from infra.local.server import LocalApi
from infra.local.stream import ANSWERS_STREAM, LocalStream, StreamError, kinesis_client, start_stream
from infra.table import ensure_table

STREAM_FAILURES = Path(".build/stream-failures.jsonl")  # the local stream's failure queue


class StackError(RuntimeError):
    """The stack cannot start; the message is one line saying what to do."""


@dataclass
class LocalStack:
    api: LocalApi
    settings: Settings
    store: str  # where the state is kept, for people
    state_file: Path | None  # the SQLite file; None when the state is in DynamoDB
    _close: Callable[[], None]
    stream: LocalStream | None = None

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
        self.api.stop()
        self._close()


def _store_problem(error: Exception, endpoint: str) -> StackError:
    if isinstance(error, NoCredentialsError):
        return StackError(
            f"DYNAMODB_ENDPOINT {endpoint}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any values for DynamoDB Local or LocalStack)"
        )
    if isinstance(error, NoRegionError):
        return StackError(f"DYNAMODB_ENDPOINT {endpoint}: no AWS region; set AWS_DEFAULT_REGION")
    if isinstance(error, EndpointConnectionError):
        return StackError(
            f"cannot reach DYNAMODB_ENDPOINT {endpoint}: start it, or unset DYNAMODB_ENDPOINT for the embedded store"
        )
    assert isinstance(error, ClientError)
    problem = error.response.get("Error", {})
    return StackError(
        f"DYNAMODB_ENDPOINT {endpoint}: {problem.get('Code')}: {problem.get('Message')}; "
        "check the credentials and region"
    )


def _dynamodb(settings: Settings, endpoint: str) -> None:
    """Creates the table on the endpoint if it is missing; one line when the endpoint cannot be used."""
    try:
        ensure_table(build_client(settings), settings.table_name)
    except (NoCredentialsError, NoRegionError, EndpointConnectionError, ClientError) as error:
        raise _store_problem(error, endpoint) from None


@dataclass(frozen=True)
class _Store:
    store: StateStore | None  # None: the DynamoDB store the composition builds
    where: str
    close: Callable[[], None]
    path: Path | None = None


def _sqlite(settings: Settings, bundle: ModelBundle, state_file: Path | None, durability: Durability) -> _Store:
    """SQLite at `state_file`, or in a temporary directory removed at close."""
    scratch = None if state_file else Path(tempfile.mkdtemp(prefix="carryover-state-"))
    path = state_file or Path(str(scratch)) / "state.sqlite3"
    name = Manifest.read(settings.model_bundle).name
    store = SQLiteStateStore(path, name, lifetimes(settings), utc_now, durability)
    store.keep_states_in(SQLiteBlobs(path, utc_now), states_in_objects(bundle, settings))

    def close() -> None:
        store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    return _Store(store, f"SQLite in {path}", close, path)


def start_stack(
    bundle: Path,
    port: int = 3000,
    dynamodb_endpoint: str | None = None,
    table: str = "carryover-local",
    instances: int = 64,
    engine: str | None = None,
    state_file: Path | None = None,
    durability: Durability = "process",
    log: Callable[[str], None] | None = None,
    stream_port: int | None = None,
    stream_failures: Path = STREAM_FAILURES,
) -> LocalStack:
    """Starts everything in this process; `port=0` picks a free port. With `dynamodb_endpoint` the state is kept
    there (the table created if missing); otherwise in SQLite at `state_file`, or in a temporary file removed at
    stop when none is given. `log` gets one line a request. With `stream_port`, kinesalite on that port and the
    stream function polling it (`infra.local.stream`), on the same store, records it cannot apply appended to
    `stream_failures`."""
    given = {"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle), "DYNAMODB_ENDPOINT": dynamodb_endpoint, "ENGINE": engine}
    settings = Settings.from_env(os.environ | {key: value for key, value in given.items() if value})
    bundle_loaded = ModelBundle.load(settings.model_bundle, settings.engine)
    if dynamodb_endpoint:
        _dynamodb(settings, dynamodb_endpoint)
        kept = _Store(None, f"DynamoDB at {dynamodb_endpoint}, table {table}", lambda: None)
    else:
        kept = _sqlite(settings, bundle_loaded, state_file, durability)
    store = kept.store or build_store(settings, bundle_loaded)
    service = build_service(settings, bundle_loaded, store=store)
    api = LocalApi(
        lambda: create_lambda_handler(service, settings),
        port=port,
        most_instances=instances,
        pages=api_pages(service.manifest, settings.max_timesteps),
        log=log,
        max_body_bytes=settings.max_body_bytes,
    )
    try:
        api.start_background()
        stream = (
            None
            if stream_port is None
            else _stream(settings, service, store, stream_port, stream_failures, log or print)
        )
    except (OSError, StreamError):
        api.stop()
        kept.close()
        raise
    return LocalStack(api, settings, kept.where, kept.path, kept.close, stream)


def _stream(
    settings: Settings,
    service: PredictionService,
    store: StateStore,
    port: int,
    failures: Path,
    log: Callable[[str], None],
) -> LocalStream:
    """The stream function on the local stream: failures to a file, answers to kinesalite."""
    failures.parent.mkdir(parents=True, exist_ok=True)

    def handler_for(endpoint: str) -> StreamHandler:
        answers = StreamAnswers(kinesis_client(endpoint), ANSWERS_STREAM)
        return create_stream_handler(build_consumer(settings, service, FileFailures(failures), answers))

    return start_stream(handler_for, port, failures, log)
