"""A Kinesis shard as the tests drive it: records put in order, delivered in events shaped as Lambda's event
source mapping delivers them, to a stream consumer on a real store (moto's SQS and Kinesis for its sinks)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carryover.composition import build_service, lifetimes
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store import StateStore
from carryover.store.dynamodb import DynamoDBStateStore
from carryover.stream.composition import build_consumer
from carryover.stream.lambda_handler import StreamConsumer
from carryover.stream.sinks import QueueFailures, StreamAnswers
from infra.local.delivery import ShardDelivery
from layers.exporter.verify import random_chunks
from tests import scenarios
from tests.clients import HandlerClient
from tests.conftest import Bundled, Served

SHARD = "shardId-000000000000"
FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898
ANSWERS = "carryover-answers"


def record_data(user: str, rows: Any, reset: bool = False) -> bytes:
    inputs = rows.tolist() if hasattr(rows, "tolist") else rows
    return json.dumps({"user_id": user, "inputs": inputs, "reset": reset}).encode()


@dataclass
class Shard:
    """Records put on one shard, each with its sequence number; `event` delivers a slice of them."""

    records: list[tuple[int, str, bytes]] = field(default_factory=list)
    shard_id: str = SHARD
    first: int = FIRST_SEQUENCE

    def put(self, user: str, data: bytes) -> int:
        sequence = self.first + 17 * len(self.records)
        self.records.append((sequence, user, data))
        return sequence

    def event(self, start: int, end: int) -> dict[str, Any]:
        return self.batch(self.records[start:end])

    def batch(self, records: list[tuple[int, str, bytes]]) -> dict[str, Any]:
        return {"Records": [kinesis_record(*record, shard=self.shard_id) for record in records]}

    def index(self, sequence: str) -> int:
        return next(i for i, (seq, _, _) in enumerate(self.records) if str(seq) == sequence)


def kinesis_record(sequence: int, key: str, data: bytes, shard: str = SHARD) -> dict[str, Any]:
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": key, "sequenceNumber": str(sequence),
                    "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": 1545084650.987},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/carryover-events",
    }  # fmt: skip


@dataclass
class Sinks:
    """moto's SQS queue and Kinesis stream behind a consumer's failure queue and answers."""

    sqs: Any
    kinesis: Any
    queue_url: str
    stream: str = ANSWERS

    @classmethod
    def create(cls, session: Any, name: str = "carryover") -> Sinks:
        sqs, kinesis = session.client("sqs"), session.client("kinesis")
        kinesis.create_stream(StreamName=f"{name}-answers", ShardCount=1)
        return cls(sqs, kinesis, sqs.create_queue(QueueName=f"{name}-failures")["QueueUrl"], f"{name}-answers")

    def failures(self) -> list[dict[str, Any]]:
        found = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(message["Body"]) for message in messages]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return found

    def answers(self) -> list[dict[str, Any]]:
        shard = self.kinesis.list_shards(StreamName=self.stream)["Shards"][0]["ShardId"]
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
        found = self.kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=10_000)["Records"]
        return [json.loads(record["Data"]) for record in found]


@dataclass
class Ways:
    """The two ways in on one store: the stream consumer and the HTTP API's handler."""

    stream: StreamConsumer
    http: HandlerClient


def ways_in(
    served: Bundled, engine: str, store: StateStore, settings: Settings, sinks: Sinks, kinesis: Any = None
) -> Ways:
    """Both ways in on `store`; `kinesis`: the answers stream's client, if not the sinks' own (one that fails)."""
    service = build_service(settings, served.bundles[engine], store=store)
    failures = QueueFailures(sinks.sqs, sinks.queue_url)
    stream = build_consumer(settings, service, failures, StreamAnswers(kinesis or sinks.kinesis, sinks.stream))
    return Ways(stream, HandlerClient(create_lambda_handler(service, settings)))


Delivery = ShardDelivery[tuple[int, str, bytes]]


def delivery(shard: Shard, consumer: StreamConsumer, batch_size: int = 100) -> tuple[Delivery, list[dict[str, Any]]]:
    """The event source mapping delivering `shard` to `consumer` (its records as they are when each batch is
    read), with the template's retries and bisection; and the list of what it passes over."""
    passed_over: list[dict[str, Any]] = []
    delivered = ShardDelivery(
        shard.shard_id, lambda batch: consumer.consume(shard.batch(batch)), lambda record: str(record[0]),
        passed_over.append, retries=10, batch_size=batch_size, records=shard.records,
    )  # fmt: skip
    return delivered, passed_over


def dynamodb_store(settings: Settings, served: Bundled, client: Any, table: str) -> DynamoDBStateStore:
    return DynamoDBStateStore(client, table, served.manifest.name, lifetimes(settings))


def by_user(answers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each user's answers in their order, once per id (deliveries again publish an answer again: the same one)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for answer in answers:
        earlier = found.setdefault(answer["user_id"], {}).setdefault(answer["id"], answer)
        assert earlier == answer, (earlier, answer)
    return {user: sorted(seen.values(), key=lambda a: a["steps"]) for user, seen in found.items()}


def outputs_of(answers: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.concatenate([np.asarray(answer["outputs"][name]) for answer in answers])


def interleaved(served: Bundled, rng: np.random.Generator, shard: Shard, users: int) -> dict[str, np.ndarray]:
    """Puts `users` users' sequences on the shard in chunks, the users' records interleaved at random (rows a Keras
    model's reader draws, or normal ones for a bundle without its Keras model)."""

    def sequence(length: int) -> np.ndarray:
        if isinstance(served, Served):
            return scenarios.sequence(served, rng, length)
        return rng.normal(size=(length, served.manifest.input.features)).astype(np.float32)

    wholes = {scenarios.new_user(): sequence(int(rng.integers(12, 30))) for _ in range(users)}
    plans = {user: random_chunks(len(whole), rng) for user, whole in wholes.items()}
    sent = dict.fromkeys(wholes, 0)
    while any(plans.values()):
        user = str(rng.choice([user for user, plan in plans.items() if plan]))
        size = plans[user].pop(0)
        shard.put(user, record_data(user, wholes[user][sent[user] : sent[user] + size]))
        sent[user] += size
    return wholes
