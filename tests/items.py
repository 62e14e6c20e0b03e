"""DynamoDB keys and items as tests read and damage them, built from the item schema (`state_item`)."""

from __future__ import annotations

from typing import Any

from carryover.store.codec import item_key
from carryover.store.item import Item

MODEL = "seed_lstm"


def key(user: str, model: str = MODEL) -> Item:
    return item_key(user, model)


def raw_item(dynamodb: Any, table: str, user: str, model: str = MODEL) -> Item | None:
    item: Item | None = dynamodb.get_item(TableName=table, Key=key(user, model), ConsistentRead=True).get("Item")
    return item


def overwrite(dynamodb: Any, table: str, user: str, model: str = MODEL, **attributes: Any) -> None:
    """Sets the given raw attributes on the user's item, whatever they hold."""
    dynamodb.update_item(
        TableName=table,
        Key=key(user, model),
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
        ExpressionAttributeNames={f"#a{i}": name for i, name in enumerate(attributes)},
        ExpressionAttributeValues={f":v{i}": value for i, value in enumerate(attributes.values())},
    )
