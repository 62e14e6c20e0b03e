"""The state an earlier release's `make run` kept: moto's server with a journal of DynamoDB requests in
.build/local-dynamodb.jsonl. At the first start without a SQLite file, its items are brought over, once, so an
upgrade forgets no user; the journal is then renamed, not deleted.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from carryover.store.codec import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, from_json, to_json
from carryover.store.item import Item
from carryover.store.sqlite import SCHEMA

JOURNAL = Path(".build/local-dynamodb.jsonl")
PREFIX = "DynamoDB_20120810."


def _items(journal: Path, table: str) -> dict[tuple[str, str], Item]:
    """The table's items as the journal leaves them: its puts and deletes replayed in order. A line torn by a
    crash (the last one) is skipped; it was never answered."""
    found: dict[tuple[str, str], Item] = {}
    for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            operation = entry["headers"]["x-amz-target"].removeprefix(PREFIX)
            body: dict[str, Any] = json.loads(entry["body"])
        except (ValueError, KeyError, TypeError):
            continue
        if body.get("TableName") != table or operation not in ("PutItem", "DeleteItem"):
            continue
        item = body.get("Item") or body.get("Key") or {}
        key = (item.get(PARTITION_KEY, {}).get("S"), item.get(SORT_KEY, {}).get("S"))
        if operation == "PutItem":
            found[key] = from_json(json.dumps(item))  # the wire's DynamoDB JSON: binary as base64
        else:
            found.pop(key, None)
    return found


def import_journal(journal: Path, state_file: Path, table: str) -> int | None:
    """Brings the journal's items into a new SQLite file; the number imported, or None when there was nothing to
    do (no journal, or the SQLite file already exists)."""
    if not journal.is_file() or state_file.exists():
        return None
    items = _items(journal, table)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(state_file)) as connection, connection:
        connection.executescript(SCHEMA)
        connection.executemany(
            "INSERT OR REPLACE INTO items (user_id, model, item, expires_at) VALUES (?, ?, ?, ?)",
            [(user, model, to_json(item), _expiry(item)) for (user, model), item in items.items()],
        )
    journal.rename(journal.with_suffix(".jsonl.imported"))
    return len(items)


def _expiry(item: Item) -> int | None:
    raw = item.get(TTL_ATTRIBUTE, {}).get("N")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None
