"""The item's rules, without a store or a model: what a write leaves, how it reads back, and how a writer tells
whether its write landed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from carryover.core.domain import Covered, KeyRecord, KeyWindow, Reply, UserState
from carryover.store.codec import encode, item_key, parse
from carryover.store.item import (
    HISTORY,
    Absent,
    Attempt,
    Expired,
    Lifetimes,
    Live,
    Tombstone,
    Unreadable,
    Write,
    landed,
    remembered_keys,
    successor,
)

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
LIFETIMES = Lifetimes(state_ttl=timedelta(days=30), keys=KeyWindow(ttl=timedelta(hours=24), size=4))
KEY = item_key("ada", "model")


def state(steps: int = 3, reply: Reply | None = None) -> UserState:
    return UserState.of_one("v1", b"\x00" * 16, steps, NOW, reply)


def key(index: int, at: datetime = NOW) -> KeyRecord:
    return KeyRecord(index.to_bytes(8, "big"), b"f" * 8, at)


def written(read, write: Write, write_id: bytes = b"w" * 8, now: datetime = NOW):
    """What the store would hold after `write` on top of `read`, read back."""
    return parse(encode(KEY, successor(read, write, write_id, now, LIFETIMES)), now)


@given(steps=st.integers(0, 2**53 - 1), rows=st.integers(0, 1000), keyed=st.booleans())
def test_a_live_item_reads_back_as_written(steps, rows, keyed):
    reply = Reply(b"k" * 8, "v1", steps, "continued", rows, b"\x01\x02\x03\x04") if keyed else None
    after = written(Absent(), Write(state(steps, reply), key(1) if keyed else None))
    assert isinstance(after, Live)
    assert after.state == state(steps, reply)
    assert (after.revision, after.writes) == (1, (b"w" * 8,))
    assert after.keys == ((key(1),) if keyed else ())
    assert after.expires_at == NOW + LIFETIMES.state_ttl


@given(
    sequences=st.lists(st.integers(0, 10**128), min_size=1, max_size=50, unique=True),
    rows=st.integers(1, 100_000),
    kept=st.integers(0, 3),
)
def test_stream_answers_read_back_as_written(sequences, rows, kept):
    """The records a stream answer covers (Kinesis sequence numbers of up to 128 digits, growing), the newest
    answer and the ones kept until published."""
    records = tuple((sequence, rows) for sequence in sorted(sequences))
    answer = Reply(b"s" * 8, "v1", 9, "continued", rows, b"\x00" * 4, covered=Covered("shardId-000000000007", records))
    saved = UserState(9, state(9).models, NOW, answer, outbox=(answer,) * kept)
    after = written(Absent(), Write(saved, applied=(("shardId-000000000007", records[-1][0]),)))
    assert isinstance(after, Live) and after.state == saved
    assert after.applied.last == {"shardId-000000000007": records[-1][0]}


def test_a_delete_leaves_a_tombstone_that_keeps_history_and_keys_for_the_key_window():
    live = written(Absent(), Write(state(), key(1)))
    after = written(live, Write(None), b"d" * 8)
    assert isinstance(after, Tombstone)
    assert (after.revision, after.writes, after.keys) == (2, (b"d" * 8, b"w" * 8), (key(1),))
    assert after.expires_at == NOW + LIFETIMES.keys.ttl


def test_history_keeps_the_newest_write_ids_and_revisions_keep_counting():
    stored = parse(None, NOW)
    for index in range(HISTORY + 5):
        stored = written(stored, Write(state(index)), index.to_bytes(8, "big"))
    assert isinstance(stored, Live)
    assert stored.revision == HISTORY + 5 and len(stored.writes) == HISTORY
    assert stored.writes[0] == (HISTORY + 4).to_bytes(8, "big")


def test_keys_are_the_newest_within_the_window():
    stored = parse(None, NOW)
    for index, age in enumerate((26, 25, 1)):
        stored = written(stored, Write(state(), key(index, NOW - timedelta(hours=age))))
    assert [record.key for record in remembered_keys(stored, NOW, LIFETIMES.keys)] == [key(2).key]  # the rest: old
    fresh = written(parse(None, NOW), Write(state(), key(0)))
    for index in range(1, 6):
        fresh = written(fresh, Write(state(), key(index)))
    assert [r.key for r in remembered_keys(fresh, NOW, LIFETIMES.keys)] == [key(i).key for i in (5, 4, 3, 2)]


def test_a_writer_tells_whether_its_write_landed():
    first = written(Absent(), Write(state()), b"a" * 8)
    assert landed(Attempt(b"a" * 8, 1), first) is True
    assert landed(Attempt(b"b" * 8, 1), first) is False  # revision 1 is someone else's
    assert landed(Attempt(b"b" * 8, 2), first) is False  # revision 2 was never written
    assert landed(Attempt(b"b" * 8, 1), Absent()) is False
    assert landed(Attempt(b"b" * 8, 1), Unreadable({})) is None
    stored = first
    for index in range(HISTORY):
        stored = written(stored, Write(state()), index.to_bytes(8, "big"))
    assert landed(Attempt(b"b" * 8, 1), stored) is None  # beyond the history: cannot tell


def test_an_item_past_its_ttl_reads_as_expired_with_its_history():
    live = encode(KEY, successor(Absent(), Write(state()), b"a" * 8, NOW, LIFETIMES))
    later = NOW + LIFETIMES.state_ttl + timedelta(seconds=1)
    stored = parse(live, later)
    assert isinstance(stored, Expired) and stored.revision == 1 and stored.writes == (b"a" * 8,)


@given(st.dictionaries(st.sampled_from(["revision", "writes", "expires_at", "steps", "state"]), st.just({"S": "x"})))
def test_damage_reads_as_unreadable_never_raises(damage):
    live = encode(KEY, successor(Absent(), Write(state()), b"a" * 8, NOW, LIFETIMES))
    stored = parse(live | damage, NOW)
    assert isinstance(stored, Unreadable) or not damage
