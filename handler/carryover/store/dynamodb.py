"""The state store on DynamoDB: strongly consistent GetItem, PutItem conditional on the guard read."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from carryover.errors import StoreUnavailable
from carryover.observability import logger
from carryover.store import StateStore, WriteConflict
from carryover.store.codec import GUARD_ATTRIBUTES, PARTITION_KEY, encode, item_key, parse
from carryover.store.item import WRITE_ID_BYTES, Absent, Attempt, Lifetimes, Stored, Write, successor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient as DynamoDBClient
else:
    DynamoDBClient = Any

Clock = Callable[[], datetime]
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
    endpoint_url: str | None = None, connect_timeout: float = 1, read_timeout: float = 2, max_attempts: int = 3
) -> DynamoDBClient:
    """A client whose timeouts and retries are explicit: the worst case is bounded by
    max_attempts x (connect_timeout + read_timeout) plus botocore's backoff."""
    from botocore.session import Session  # boto3's core, without boto3's own import cost (resources, s3transfer)

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return cast("DynamoDBClient", Session().create_client("dynamodb", endpoint_url=endpoint_url, config=config))


def condition(read: Stored) -> dict[str, Any]:
    """The item must still be exactly as read: absent, or with the same raw guard attributes."""
    names = {"#pk": PARTITION_KEY}
    if isinstance(read, Absent):
        return {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": names}
    clauses, values = ["attribute_exists(#pk)"], {}
    for index, name in enumerate(GUARD_ATTRIBUTES):
        names[f"#g{index}"] = name
        value = read.guard.get(name)
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
        self._client = client
        self._table = table
        self._model = model_name
        self._lifetimes = lifetimes
        self._clock = clock

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One DynamoDB call (botocore retries it); StoreUnavailable when DynamoDB cannot be reached or keeps
        refusing."""
        try:
            result: dict[str, Any] = getattr(self._client, operation)(TableName=self._table, **params)
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

    def load(self, user_id: str) -> Stored:
        item = self._call("get_item", Key=item_key(user_id, self._model), ConsistentRead=True).get("Item")
        return parse(item, self._clock())

    def ping(self) -> None:
        """An eventually consistent read of a key no user can have."""
        self._call("get_item", Key=item_key(HEALTH_KEY, self._model), ConsistentRead=False)

    def save(self, user_id: str, write: Write, read: Stored) -> Attempt:
        write_id = os.urandom(WRITE_ID_BYTES)
        item = successor(read, write, write_id, self._clock(), self._lifetimes)
        attempt = Attempt(write_id, item.revision)
        try:
            self._call("put_item", Item=encode(item_key(user_id, self._model), item), **condition(read))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                retried = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0  # by botocore
                raise WriteConflict(attempt, ambiguous=retried) from None
            raise
        return attempt
