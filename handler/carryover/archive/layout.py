"""Where the row log lives in S3: `<prefix>part=<pp>/<sha256 of the content>.jsonl`, a user's lines always in the
partition their id hashes to (`partition_of`, PARTITIONS of them), so a job reads a user's whole log from one
partition. Objects are named by their content: writing the same lines again (a batch delivered twice) writes the
same object; a partition is read as the set of its lines, each write once (`core/history.py`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from carryover.core.history import LogEntry, RowLog
from carryover.store.log import from_line

PARTITIONS = 256


def partition_of(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:2]


def partitions() -> list[str]:
    return [f"{index:02x}" for index in range(PARTITIONS)]


def partition_prefix(prefix: str, partition: str) -> str:
    return f"{prefix}part={partition}/"


def object_key(prefix: str, partition: str, body: bytes) -> str:
    return f"{partition_prefix(prefix, partition)}{hashlib.sha256(body).hexdigest()[:32]}.jsonl"


def objects(client: Any, bucket: str, prefix: str, partition: str) -> Iterator[str]:
    """The keys of a partition's objects."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=partition_prefix(prefix, partition))
    for page in pages:
        yield from (found["Key"] for found in page.get("Contents", []))


def lines(client: Any, bucket: str, key: str) -> list[str]:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return [line for line in body.decode().splitlines() if line]


class S3Log(RowLog):
    """The log of some partitions, read once: each user's entries of the one model served."""

    def __init__(self, client: Any, bucket: str, prefix: str, parts: Sequence[str], model: str) -> None:
        self._by_user: dict[str, list[LogEntry]] = {}
        for partition in parts:
            for key in objects(client, bucket, prefix, partition):
                for line in lines(client, bucket, key):
                    name, entry = from_line(line)
                    if name == model:
                        self._by_user.setdefault(entry.user_id, []).append(entry)

    def users(self) -> list[str]:
        return sorted(self._by_user)

    def entries(self, users: Sequence[str]) -> dict[str, list[LogEntry]]:
        return {user: self._by_user.get(user, []) for user in users}
