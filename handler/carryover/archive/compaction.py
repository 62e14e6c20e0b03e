"""The row log's daily compaction: the lines the archiver wrote to `incoming/` sorted into their users' partitions
(one new object a partition that received any), then the objects read from `incoming/` removed. A partition that
received a deletion is rewritten whole: each write once, without the rows of the users deleted (their deletion
line stays, so no object written meanwhile brings them back) and without rows older than the retention. A DELETE
leaves the files within a day this way; every reader drops a deleted user's rows at once (`core/history.py`).
A run that dies midway leaves lines in both places: the next run writes them again, read once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from carryover.archive.layout import INCOMING, lines, objects, partition_of, partition_prefix, put_lines
from carryover.core.history import LogEntry, ordered
from carryover.store.log import from_line, to_line


def kept(entries: Iterable[tuple[str, LogEntry]], oldest: str | None) -> list[tuple[str, LogEntry]]:
    """Each write once, per user and model in their order from their last deletion on (the deletion kept), rows
    written before `oldest` (ISO 8601; None: all kept) dropped."""
    by_user: dict[tuple[str, str], list[LogEntry]] = {}
    for model, entry in entries:
        by_user.setdefault((model, entry.user_id), []).append(entry)
    found = []
    for (model, _), user_entries in by_user.items():
        deletion = max((e for e in user_entries if e.deleted), key=lambda entry: entry.order, default=None)
        rows = [e for e in ordered(user_entries) if oldest is None or e.at >= oldest]  # after the last deletion
        found += [(model, entry) for entry in ([deletion] if deletion else []) + rows]
    return found


def compact(client: Any, bucket: str, prefix: str, retention_days: int, now: datetime) -> int:
    """Sorts `incoming/` into the partitions; returns the lines sorted."""
    incoming = list(objects(client, bucket, prefix + INCOMING))
    by_partition: dict[str, list[tuple[str, LogEntry]]] = {}
    for key in incoming:
        for line in lines(client, bucket, key):
            model, entry = from_line(line)
            by_partition.setdefault(partition_of(entry.user_id), []).append((model, entry))
    oldest = (now - timedelta(days=retention_days)).isoformat() if retention_days else None
    for partition, found in by_partition.items():
        folder = partition_prefix(prefix, partition)
        if any(entry.deleted for _, entry in found):
            _rewrite(client, bucket, folder, found, oldest)
        else:
            put_lines(client, bucket, folder, [to_line(model, entry) for model, entry in found])
    for key in incoming:
        client.delete_object(Bucket=bucket, Key=key)
    return sum(len(found) for found in by_partition.values())


def _rewrite(client: Any, bucket: str, folder: str, new: list[tuple[str, LogEntry]], oldest: str | None) -> None:
    """The partition as one object: its lines and `new`, each write once, deleted users' rows gone."""
    keys = list(objects(client, bucket, folder))
    read = [from_line(line) for key in keys for line in lines(client, bucket, key)]
    written = put_lines(client, bucket, folder, [to_line(model, entry) for model, entry in kept([*read, *new], oldest)])
    for key in (key for key in keys if key != written):
        client.delete_object(Bucket=bucket, Key=key)
