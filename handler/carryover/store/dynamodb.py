"""The state store on DynamoDB: strongly consistent GetItem, PutItem conditional on the guard read."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from carryover.errors import StoreUnavailable
from carryover.observability import logger
from carryover.snapstart import renewed
from carryover.store import NO_ITEM, Clock, StateStore, WriteConflict
from carryover.store.codec import GUARD_ATTRIBUTES, PARTITION_KEY, SORT_KEY, item_key
from carryover.store.item import Attempt, Item, Lifetimes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient as DynamoDBClient
else:
    DynamoDBClient = Any

BATCH_GET_MOST = 100  # keys one BatchGetItem may ask for
UNPROCESSED_RETRIES = 8  # BatchGetItem calls for keys DynamoDB left unprocessed, with backoff, before giving up
HEALTH_KEY = "/health"  # not a valid user id, so never a user's item
UNAVAILABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def dynamodb_client(
    endpoint_url: str | None = None,
    connect_timeout: float = 1,
    read_timeout: float = 2,
    max_attempts: int = 3,
    connections: int = 10,
) -> DynamoDBClient:
    """A client whose timeouts and retries are explicit: the worst case is bounded by
    max_attempts x (connect_timeout + read_timeout) plus botocore's backoff. `connections`: the calls it keeps a
    connection for at once (a call beyond them opens one and closes it after)."""
    from botocore.session import Session  # boto3's core, without boto3's own import cost (resources, s3transfer)

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=connections,
    )
    return cast("DynamoDBClient", Session().create_client("dynamodb", endpoint_url=endpoint_url, config=config))


def condition(guard: Item | None) -> dict[str, Any]:
    """The item must still be exactly as read: absent (None), or with the same raw guard attributes."""
    names = {"#pk": PARTITION_KEY}
    if guard is None:
        return {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": names}
    clauses, values = ["attribute_exists(#pk)"], {}
    for index, name in enumerate(GUARD_ATTRIBUTES):
        names[f"#g{index}"] = name
        value = guard.get(name)
        if value is None:
            clauses.append(f"attribute_not_exists(#g{index})")
        else:
            clauses.append(f"#g{index} = :g{index}")
            values[f":g{index}"] = value
    expression: dict[str, Any] = {"ConditionExpression": " AND ".join(clauses), "ExpressionAttributeNames": names}
    return expression | ({"ExpressionAttributeValues": values} if values else {})


class DynamoDBStateStore(StateStore):
    def __init__(
        self, client: DynamoDBClient, table: str, model_name: str, lifetimes: Lifetimes, clock: Clock = utc_now
    ) -> None:
        super().__init__(model_name, lifetimes, clock)
        self._client = client
        self._table = table

    def _reconnect(self) -> None:
        self._client = renewed(self._client)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One DynamoDB call on the table (botocore retries it); StoreUnavailable when DynamoDB cannot be reached
        or keeps refusing."""
        return self._request(operation, TableName=self._table, **params)

    def _call_batch(self, requests: dict[str, Any]) -> dict[str, Any]:
        return self._request("batch_get_item", RequestItems=requests)

    def _request(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, operation)(**params)
            return result
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in UNAVAILABLE_CODES or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                logger.warning("state store unavailable", extra={"operation": operation, "cause": code})
                raise StoreUnavailable(code) from error
            raise
        except (BotocoreConnectionError, HTTPClientError) as error:
            logger.warning("state store unavailable", extra={"operation": operation, "cause": type(error).__name__})
            raise StoreUnavailable(type(error).__name__) from error

    def _get(self, user_id: str) -> Item | None:
        item: Item | None = self._call("get_item", Key=item_key(user_id, self._model), ConsistentRead=True).get("Item")
        return item

    def _scan(self) -> Iterator[tuple[str, Item]]:
        """A strongly consistent Scan of the table, page after page, this model's items only."""
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table,
            ConsistentRead=True,
            FilterExpression="#m = :m",
            ExpressionAttributeNames={"#m": SORT_KEY},
            ExpressionAttributeValues={":m": {"S": self._model}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield item[PARTITION_KEY]["S"], item

    def _get_many(self, user_ids: Sequence[str]) -> dict[str, Item]:
        """One strongly consistent BatchGetItem per 100 users; keys DynamoDB leaves unprocessed (throttling, the
        16 MB answer limit) are asked again with backoff, and StoreUnavailable when they stay unprocessed."""
        found: dict[str, Item] = {}
        for start in range(0, len(user_ids), BATCH_GET_MOST):
            keys = [item_key(user_id, self._model) for user_id in user_ids[start : start + BATCH_GET_MOST]]
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if attempt:
                    time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
                answer = self._call_batch({self._table: {"Keys": keys, "ConsistentRead": True}})
                found |= {item[PARTITION_KEY]["S"]: item for item in answer.get("Responses", {}).get(self._table, [])}
                keys = answer.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
                if not keys:
                    break
            if keys:
                logger.warning("state store unavailable", extra={"operation": "batch_get_item", "cause": "unprocessed"})
                raise StoreUnavailable("UnprocessedKeys")
        return found

    def ping(self) -> None:
        """An eventually consistent read of a key no user can have."""
        self._call("get_item", Key=item_key(HEALTH_KEY, self._model), ConsistentRead=False)

    def _put(self, user_id: str, item: Item, guard: Item | None, attempt: Attempt) -> None:
        """A conditional PutItem; refused, it returns the item it found (ALL_OLD): the next attempt plans from that,
        with no read of its own."""
        try:
            self._call("put_item", Item=item, ReturnValuesOnConditionCheckFailure="ALL_OLD", **condition(guard))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                retried = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0  # by botocore
                found = cast("Item", error.response.get("Item")) or NO_ITEM
                raise WriteConflict(attempt, ambiguous=retried, found=found) from None
            raise
