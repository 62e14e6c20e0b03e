"""Where the row log lives in S3. The archiver writes each batch of the change stream as one object under
`<prefix>incoming/`; the daily compaction sorts those lines by user into `<prefix>part=<pp>/`, a user's lines always
in the partition their id hashes to (`partition_of`, PARTITIONS of them), so a job reads a user's whole log from
one partition (and what `incoming/` holds of it). Every object is named by its content: writing the same lines
again (a batch delivered twice) writes the same object; a log is read as the set of its lines, each write once
(`core/history.py`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from carryover.core.history import LogEntry, RowLog
from carryover.store.log import from_line

PARTITIONS = 256
INCOMING = "incoming/"


def partition_of(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:2]


def partitions() -> list[str]:
    return [f"{index:02x}" for index in range(PARTITIONS)]


def partition_prefix(prefix: str, partition: str) -> str:
    return f"{prefix}part={partition}/"


def object_key(folder: str, body: bytes) -> str:
    """The key of an object of `body` in `folder` (a partition's, or `incoming/`): named by its content."""
    return f"{folder}{hashlib.sha256(body).hexdigest()[:32]}.jsonl"


def objects(client: Any, bucket: str, folder: str) -> Iterator[str]:
    """The keys of a folder's objects."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        yield from (found["Key"] for found in page.get("Contents", []))


def lines(client: Any, bucket: str, key: str) -> list[str]:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return [line for line in body.decode().splitlines() if line]


def put_lines(client: Any, bucket: str, folder: str, found: Sequence[str]) -> str:
    body = "".join(line + "\n" for line in found).encode()
    key = object_key(folder, body)
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    return key


class S3Log(RowLog):
    """The log of some partitions, read once (with what `incoming/` holds of them): each user's entries of the one
    model served."""

    def __init__(self, client: Any, bucket: str, prefix: str, parts: Sequence[str], model: str) -> None:
        self._by_user: dict[str, list[LogEntry]] = {}
        chosen = set(parts)
        keys = [key for part in parts for key in objects(client, bucket, partition_prefix(prefix, part))]
        for key in [*keys, *objects(client, bucket, prefix + INCOMING)]:
            for line in lines(client, bucket, key):
                name, entry = from_line(line)
                if name == model and partition_of(entry.user_id) in chosen:
                    self._by_user.setdefault(entry.user_id, []).append(entry)

    def users(self) -> list[str]:
        return sorted(self._by_user)

    def entries(self, users: Sequence[str]) -> dict[str, list[LogEntry]]:
        return {user: self._by_user.get(user, []) for user in users}
