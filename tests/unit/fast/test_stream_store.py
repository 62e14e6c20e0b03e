"""What the stream path asks of the store: many users read in strongly consistent BatchGetItems of at most 100
keys, keys DynamoDB leaves unprocessed asked again; SQLite reading them alike; and each user's stream position
kept by every write, HTTP ones and DELETE included."""

from __future__ import annotations

from typing import Any, cast

import pytest

from carryover.composition import lifetimes
from carryover.core.domain import UserState
from carryover.errors import StoreUnavailable
from carryover.store import StateStore
from carryover.store.dynamodb import UNPROCESSED_RETRIES, DynamoDBStateStore, utc_now
from carryover.store.item import Absent, Live, Tombstone, Write
from carryover.store.sqlite import SQLiteStateStore
from tests.stores import MODEL
from tests.unit.conftest import TABLE, settings_for

USERS = [f"u{i:03d}" for i in range(150)]


class Unprocessing:
    """A DynamoDB client whose BatchGetItem leaves the last `left` keys unprocessed, `times` times."""

    def __init__(self, client: Any, left: int, times: int) -> None:
        self._client, self._left, self._times = client, left, times
        self.asked: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        assert request["ConsistentRead"] is True
        keys = request["Keys"]
        self.asked.append(len(keys))
        if self._times and len(keys) > self._left:
            self._times -= 1
            kept, left = keys[: -self._left], keys[-self._left :]
            answer = self._client.batch_get_item(RequestItems={table: {**request, "Keys": kept}})
            return answer | {"UnprocessedKeys": {table: {**request, "Keys": left}}}
        found: dict[str, Any] = self._client.batch_get_item(RequestItems=RequestItems)
        return found


class Stuck(Unprocessing):
    """A BatchGetItem that never processes a key (DynamoDB throttling the table for good)."""

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(len(next(iter(RequestItems.values()))["Keys"]))
        return {"Responses": {}, "UnprocessedKeys": RequestItems}


def state(served: Any, steps: int) -> UserState:
    manifest = served.manifest
    return UserState.of_one(manifest.version, manifest.pack_state(manifest.zero_state()), steps, utc_now())


def fill(kept: StateStore, served: Any) -> list[str]:
    """Every third of USERS with a state of as many steps as their number; those users."""
    written = USERS[::3]
    for user in written:
        kept.save(user, Write(state(served, int(user[1:]) + 1)), Absent())
    return written


def test_many_users_are_read_100_at_a_time_and_unprocessed_keys_asked_again(dynamodb, small):
    life = lifetimes(settings_for(small, {}))
    written = fill(DynamoDBStateStore(dynamodb, TABLE, MODEL, life), small)
    unprocessing = Unprocessing(dynamodb, left=7, times=2)
    found = DynamoDBStateStore(cast(Any, unprocessing), TABLE, MODEL, life).load_many(USERS)
    assert unprocessing.asked == [100, 7, 50, 7]  # 100 keys at most; the 7 left unprocessed asked again
    assert {user: found[user].state.stream for user in written} == {u: int(u[1:]) + 1 for u in written}  # type: ignore[union-attr]
    assert all(isinstance(found[user], Absent) for user in USERS if user not in written)


def test_keys_that_stay_unprocessed_are_a_store_outage(dynamodb, small):
    stuck = Stuck(dynamodb, left=0, times=0)
    kept = DynamoDBStateStore(cast(Any, stuck), TABLE, MODEL, lifetimes(settings_for(small, {})))
    with pytest.raises(StoreUnavailable):
        kept.load_many(["a", "b"])
    assert stuck.asked == [2] * (UNPROCESSED_RETRIES + 1)


def test_sqlite_reads_many_users_as_it_reads_each(small, tmp_path):
    kept = SQLiteStateStore(tmp_path / "state.sqlite3", MODEL, lifetimes(settings_for(small, {})), utc_now)
    fill(kept, small)
    assert kept.load_many(USERS) == {user: kept.load(user) for user in USERS}
    kept.close()


def test_every_write_keeps_the_users_stream_position(dynamodb, small):
    kept = DynamoDBStateStore(dynamodb, TABLE, MODEL, lifetimes(settings_for(small, {})))
    kept.save("ana", Write(state(small, 1), applied=(("s-1", 17),)), Absent())
    after_stream = kept.load("ana")
    kept.save("ana", Write(state(small, 2)), after_stream)  # what a POST writes
    after_http = kept.load("ana")
    assert isinstance(after_http, Live) and after_http.applied.last == {"s-1": 17}
    kept.save("ana", Write(None), after_http)  # what a DELETE writes
    deleted = kept.load("ana")
    assert isinstance(deleted, Tombstone) and deleted.applied.last == {"s-1": 17}
    kept.save("ana", Write(None, applied=(("s-2", 5), ("s-1", 20))), deleted)
    assert kept.load("ana").applied.last == {"s-2": 5, "s-1": 20}  # type: ignore[union-attr]
