"""The items a store holds, as tests read and damage them: in DynamoDB (any client) or in a SQLite file, the
same attributes either way (`carryover.store.codec`)."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from carryover.store.codec import TTL_ATTRIBUTE, from_json, item_key, to_json
from carryover.store.dynamodb import dynamodb_client
from carryover.store.item import Item
from infra.local.stack import LocalStack

MODEL = "seed_lstm"


class Items(ABC):
    @abstractmethod
    def get(self, user: str, model: str = MODEL) -> Item | None:
        """The user's item as stored, or None."""

    @abstractmethod
    def put(self, item: Item) -> None:
        """Stores `item` as it is, whatever it holds."""

    @abstractmethod
    def all(self) -> list[Item]: ...

    def saved(self, user: str, model: str = MODEL) -> Item:
        """The user's item, which the test has written."""
        item = self.get(user, model)
        assert item is not None, f"{user} has no item"
        return item

    def overwrite(self, user: str, model: str = MODEL, **attributes: Any) -> None:
        """Sets the given raw attributes on the user's item."""
        self.put(self.saved(user, model) | attributes)

    def remove(self, user: str, *names: str, model: str = MODEL) -> None:
        self.put({name: value for name, value in self.saved(user, model).items() if name not in names})


def items_of(stack: LocalStack) -> Items:
    """The items of a local stack's store."""
    if stack.state_file is not None:
        return SQLiteItems(stack.state_file)
    return DynamoDBItems(dynamodb_client(str(stack.settings.dynamodb_endpoint)), stack.settings.table_name)


class DynamoDBItems(Items):
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table

    def get(self, user: str, model: str = MODEL) -> Item | None:
        found = self.client.get_item(TableName=self.table, Key=item_key(user, model), ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item

    def put(self, item: Item) -> None:
        self.client.put_item(TableName=self.table, Item=item)

    def all(self) -> list[Item]:
        found: list[Item] = self.client.scan(TableName=self.table)["Items"]
        return found


class SQLiteItems(Items):
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as connection:
            yield connection

    def get(self, user: str, model: str = MODEL) -> Item | None:
        with self._connect() as connection:
            row = connection.execute("SELECT item FROM items WHERE user_id = ? AND model = ?", (user, model)).fetchone()
        return None if row is None else from_json(row[0])

    def put(self, item: Item) -> None:
        ttl = item.get(TTL_ATTRIBUTE, {}).get("N")
        expires_at = int(ttl) if isinstance(ttl, str) and ttl.lstrip("-").isdigit() else None
        if expires_at is not None and abs(expires_at) >= 2**63:  # beyond SQLite's integers: the sweep ignores it
            expires_at = None
        with self._connect() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO items (user_id, model, item, expires_at) VALUES (?, ?, ?, ?)",
                (item["user_id"]["S"], item["model"]["S"], to_json(item), expires_at),
            )

    def all(self) -> list[Item]:
        with self._connect() as connection:
            return [from_json(row[0]) for row in connection.execute("SELECT item FROM items ORDER BY user_id, model")]
