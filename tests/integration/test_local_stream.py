"""The local stream as `make run STREAM=1` serves it: kinesalite (a Kinesis-compatible server) polled like an
event source mapping, records put with the client's `Records`: answers that match Keras, on the answers stream
and in GET /users/{id}/state, and a bad record in the failure file, blocking nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
from carryover_client import Records

from infra.local.stack import LocalStack, start_stack
from infra.local.stream import ANSWERS_STREAM, EVENTS_STREAM, kinesis_client
from layers.exporter.verify import TOLERANCE
from tests import scenarios
from tests.clients import HttpClient

WITHIN_S = 30.0


@pytest.fixture
def stack(served, tmp_path, monkeypatch) -> Iterator[LocalStack]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    started = start_stack(served["seed"].path, port=0, state_file=tmp_path / "state.sqlite3", stream_port=0,
                          stream_failures=tmp_path / "failures.jsonl", log=lambda _: None)  # fmt: skip
    yield started
    started.stop()


def answered(stack: LocalStack, user: str, steps: int) -> list[dict]:
    """The answers published for `user` once their state reaches `steps` (waiting for the poller)."""
    http, deadline = HttpClient(stack.api.url), time.monotonic() + WITHIN_S
    while (reply := http.state(user)).status != 200 or reply.body["steps"] < steps:
        assert time.monotonic() < deadline, reply.body
        time.sleep(0.2)
    assert reply.body["steps"] == steps
    assert stack.stream is not None
    client = kinesis_client(stack.stream.endpoint)
    shard = client.list_shards(StreamName=ANSWERS_STREAM)["Shards"][0]["ShardId"]
    position = client.get_shard_iterator(StreamName=ANSWERS_STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    found = client.get_records(ShardIterator=position["ShardIterator"])["Records"]
    return [answer for record in found if (answer := json.loads(record["Data"]))["user_id"] == user]


def test_records_put_on_the_local_stream_are_applied_in_order_and_answered(stack, served):
    seed = served["seed"]
    whole = scenarios.sequence(seed, np.random.default_rng(7), 14)
    assert stack.stream is not None
    records = Records(EVENTS_STREAM, region="us-east-1", endpoint_url=stack.stream.endpoint)
    puts = records.put_many("ana", whole[:6], chunk=3)
    bad = kinesis_client(stack.stream.endpoint).put_record(
        StreamName=EVENTS_STREAM, PartitionKey="ana", Data=b'{"user_id": "ana", "inputs": [[1.0]]}'
    )
    puts += records.put_many("ana", whole[6:], chunk=4)
    answers = answered(stack, "ana", len(whole))
    name = seed.manifest.outputs[0].name
    got = np.concatenate([answer["outputs"][name] for answer in sorted(answers, key=lambda a: a["steps"])])
    assert float(np.max(np.abs(got - seed.graph.reference(seed.keras_model, whole)[name]))) <= TOLERANCE
    covered = [r["sequence_number"] for answer in answers for r in answer["records"]]
    assert sorted(covered, key=int) == [put.sequence_number for put in puts]  # each applied once, the bad one not
    (failure,) = [json.loads(line) for line in stack.stream.failures.read_text().splitlines()]
    assert failure["sequence_number"] == bad["SequenceNumber"] and failure["code"] == "invalid_request"


def test_the_records_client_needs_no_aws_settings_for_the_local_stream(stack, monkeypatch, tmp_path):
    """A server on this machine takes any credentials: none in the environment, none in files, no region."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert stack.stream is not None
    put = Records(EVENTS_STREAM, endpoint_url=stack.stream.endpoint).put("bo", [[0.1] * 8])
    assert put.shard_id and put.sequence_number
