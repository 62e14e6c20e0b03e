"""The row log compacted, a partition at a time (daily, on a schedule): its objects read as one set of lines,
written back as one object holding each write once, without the rows of users deleted since (a deletion line
stays, so an object written meanwhile cannot bring them back) and without rows older than the retention; then
the objects read are removed. A DELETE leaves the files within a day this way (every reader drops a deleted
user's rows at once: `core/history.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from carryover.archive.layout import lines, object_key, objects
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


def compact(client: Any, bucket: str, prefix: str, partition: str, retention_days: int, now: datetime) -> int:
    """Compacts one partition; returns the lines it keeps."""
    keys = list(objects(client, bucket, prefix, partition))
    read = [from_line(line) for key in keys for line in lines(client, bucket, key)]
    oldest = (now - timedelta(days=retention_days)).isoformat() if retention_days else None
    found = kept(read, oldest)
    body = "".join(to_line(model, entry) + "\n" for model, entry in found).encode()
    written = object_key(prefix, partition, body)
    if found:
        client.put_object(Bucket=bucket, Key=written, Body=body, ContentType="application/x-ndjson")
    for key in (key for key in keys if key != written):
        client.delete_object(Bucket=bucket, Key=key)
    return len(found)
