"""The row log's one format: the entry a write leaves (`entry_of`, from the item as a store or the table's change
stream holds it) and its JSON line (`to_line`, `from_line`), which every log keeps: the local store's table
beside the items, and the files the archiver writes from DynamoDB Streams (`carryover.archive`).

A line: {"user_id", "model", "write": write id (hex), "created", "revision", "steps", "at", "runs": [{"from":
position, "rows": float32 base64}], "records": ["shard:sequence", ...], "key": digest (hex), "deleted": true}
(the last three only when there are any).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from carryover.core.history import LogEntry, Run
from carryover.store.blobs import BlobStore, resolve, without_states
from carryover.store.codec import PARTITION_KEY, SORT_KEY, parse
from carryover.store.item import Item, Live, Tombstone

ANY_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # before any item's expiry: an entry is read whatever its TTL says now


def entry_of(item: Item, blobs: BlobStore | None = None) -> tuple[str, LogEntry] | None:
    """The model name and log entry of the write that left `item`: the rows it applied (with the row log on; from
    `blobs` when kept as objects), or a deletion; None for a write that applied none (a bootstrap's, or the row log
    off) or an item it cannot read. The item's states, which the log does not hold, are never fetched."""
    stored = parse(resolve(without_states(item), blobs), ANY_TIME)
    user, model = item.get(PARTITION_KEY, {}).get("S"), item.get(SORT_KEY, {}).get("S")
    if not isinstance(stored, Live | Tombstone) or not user or not model or not stored.writes:
        return None
    if isinstance(stored, Live) and not stored.logged:
        return None
    fields: dict[str, Any] = {
        "user_id": user,
        "write_id": stored.writes[0].hex(),
        "created": stored.created,
        "revision": stored.revision,
    }
    if isinstance(stored, Tombstone):
        return model, LogEntry(steps=0, at="", deleted=True, **fields)
    reply = stored.state.reply  # the reply an item holds is always its latest write's
    records = reply.covered.records if reply is not None and reply.covered is not None else ()
    shard = reply.covered.shard if reply is not None and reply.covered is not None else ""
    return model, LogEntry(
        steps=stored.state.stream,
        at=stored.state.updated_at.isoformat(),
        runs=stored.logged,
        records=tuple(f"{shard}:{sequence}" for sequence, _ in records),
        key=reply.key.hex() if reply is not None and reply.covered is None else None,
        **fields,
    )


def to_line(model: str, entry: LogEntry) -> str:
    line: dict[str, Any] = {
        "user_id": entry.user_id,
        "model": model,
        "write": entry.write_id,
        "created": entry.created,
        "revision": entry.revision,
        "steps": entry.steps,
        "at": entry.at,
        "runs": [{"from": run.start, "rows": base64.b64encode(run.blob).decode()} for run in entry.runs],
    }
    if entry.records:
        line["records"] = list(entry.records)
    if entry.key:
        line["key"] = entry.key
    if entry.deleted:
        line["deleted"] = True
    return json.dumps(line, separators=(",", ":"))


def from_line(text: str) -> tuple[str, LogEntry]:
    """The model name and entry of a line `to_line` wrote; ValueError (or KeyError) for anything else."""
    line = json.loads(text)
    runs = tuple(Run(int(run["from"]), base64.b64decode(run["rows"])) for run in line["runs"])
    entry = LogEntry(
        user_id=str(line["user_id"]),
        write_id=str(line["write"]),
        created=int(line["created"]),
        revision=int(line["revision"]),
        steps=int(line["steps"]),
        at=str(line["at"]),
        runs=runs,
        records=tuple(line.get("records", ())),
        key=line.get("key"),
        deleted=bool(line.get("deleted", False)),
    )
    return str(line["model"]), entry
