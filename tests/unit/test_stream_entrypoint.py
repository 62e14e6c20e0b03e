"""The stream function's entry point as deployed: configured from the environment (the failure queue and the
answers stream the stack creates), invoked with `events/kinesis.json` as the event source mapping sends it; what
the failure queue is sent for a record."""

from __future__ import annotations

import importlib
import sys

import boto3
import pytest

from carryover.config import ConfigurationError, Settings
from carryover.core.domain import Position
from carryover.core.plan import Entry
from carryover.errors import InvalidJson
from carryover.stream.composition import build_stream_handler
from carryover.stream.records import Delivered
from carryover.stream.sinks import failure_message
from tests import streams
from tests.clients import load_event
from tests.unit.conftest import TABLE


@pytest.fixture
def entrypoint(dynamodb, served, monkeypatch):
    sinks = streams.Sinks.create(boto3)
    for name, value in {"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(served["seed"].path),
                        "FAILURE_QUEUE_URL": sinks.queue_url, "ANSWERS_STREAM": sinks.stream}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    sys.modules.pop("stream_app", None)
    yield importlib.import_module("stream_app"), sinks
    sys.modules.pop("stream_app", None)


def test_the_event_file_is_applied_and_its_bad_record_sent_to_the_failure_queue(entrypoint):
    module, sinks = entrypoint
    event = load_event("kinesis.json")
    context = type("Context", (), {"function_name": "stream", "memory_limit_in_mb": 1024, "invoked_function_arn": "",
                                   "aws_request_id": "r-1"})()  # fmt: skip
    assert module.lambda_handler(event, context) == {"batchItemFailures": []}
    answers = {answer["user_id"]: answer for answer in sinks.answers()}
    assert (answers["alice"]["steps"], answers["bob"]["steps"]) == (3, 1)
    (failure,) = sinks.failures()
    assert failure["sequence_number"] == event["Records"][3]["kinesis"]["sequenceNumber"]
    assert failure["reason"] == "inputs: row 0 has 1 value, expected 8 features"
    assert module.lambda_handler({"Records": "nope"}, context) == {"batchItemFailures": [{"itemIdentifier": ""}]}


def test_the_stream_function_without_its_failure_queue_stops_in_one_line(served):
    settings = Settings.from_env({"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(served["seed"].path)})
    with pytest.raises(ConfigurationError, match=r"^FAILURE_QUEUE_URL: the stream function needs its failure queue$"):
        build_stream_handler(settings)


def test_a_failure_message_carries_the_record_and_its_reason():
    position = Position("shardId-000000000001", 42)
    entry = Entry(None, InvalidJson("request body: EOF while parsing"), position)
    message = failure_message(Delivered(position, "ana", entry, "ana", "eyJ1", "arn:aws:kinesis:us-east-1:1:stream/s"))
    assert message == {
        "id": "shardId-000000000001:42", "code": "invalid_json", "reason": "request body: EOF while parsing",
        "shard_id": "shardId-000000000001", "sequence_number": "42", "partition_key": "ana", "data": "eyJ1",
        "stream": "arn:aws:kinesis:us-east-1:1:stream/s", "size": 3,
        "sha256": "3f8a765a70a3edb31bb86f6b7b505fe3f05ef7912849ba1c6771f446f512e9be",
    }  # fmt: skip
