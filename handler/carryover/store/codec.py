"""The item (`item.py`) as DynamoDB attributes, both ways, and what DynamoDB bills for it. Every store keeps
these attributes, so one codec serves them all."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

from carryover.store.item import (
    DIGEST_BYTES,
    WRITE_ID_BYTES,
    Absent,
    Attribute,
    Expired,
    Item,
    KeyRecord,
    Live,
    Reply,
    StateOrigin,
    Stored,
    Tombstone,
    Unreadable,
    UserState,
    Written,
)

PARTITION_KEY = "user_id"
SORT_KEY = "model"
TTL_ATTRIBUTE = "expires_at"
GUARD_ATTRIBUTES = ("revision", "writes")
MAX_COUNT = 2**53  # steps and revisions beyond this are damage, not data
_KEY_RECORD = struct.Struct(f"<{DIGEST_BYTES}s{DIGEST_BYTES}sI")  # key digest, request fingerprint, epoch seconds
_ORIGINS: tuple[StateOrigin, ...] = get_args(StateOrigin)


def item_key(user_id: str, model: str) -> Item:
    return {PARTITION_KEY: {"S": user_id}, SORT_KEY: {"S": model}}


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def _from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _count(attribute: Attribute) -> int:
    value = int(attribute["N"])
    if not 0 <= value < MAX_COUNT:
        raise ValueError(f"count out of range: {value}")
    return value


def _chunks(blob: bytes, size: int) -> list[bytes]:
    if len(blob) % size:
        raise ValueError("blob of the wrong length")
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def pack_keys(records: tuple[KeyRecord, ...]) -> bytes:
    return b"".join(_KEY_RECORD.pack(r.key, r.fingerprint, epoch(r.at)) for r in records)


def _unpack_keys(blob: bytes) -> tuple[KeyRecord, ...]:
    return tuple(
        KeyRecord(key, fingerprint, _from_epoch(at))
        for key, fingerprint, at in (_KEY_RECORD.unpack(chunk) for chunk in _chunks(blob, _KEY_RECORD.size))
    )


def _encode_reply(reply: Reply) -> Attribute:
    return {
        "M": {
            "k": {"B": reply.key},
            "v": {"S": reply.model_version},
            "s": {"N": str(reply.steps)},
            "o": {"S": reply.origin},
            "n": {"N": str(reply.rows)},
            "y": {"B": reply.outputs},
        }
    }


def _parse_reply(attribute: Attribute) -> Reply:
    fields = attribute["M"]
    origin = fields["o"]["S"]
    if origin not in _ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    return Reply(
        key=bytes(fields["k"]["B"]),
        model_version=fields["v"]["S"],
        steps=_count(fields["s"]),
        origin=origin,
        rows=_count(fields["n"]),
        outputs=bytes(fields["y"]["B"]),
    )


def encode(key: Item, item: Written) -> Item:
    """The attributes a store keeps for `item` under `key`."""
    encoded: Item = key | {
        "revision": {"N": str(item.revision)},
        "writes": {"B": b"".join(item.writes)},
        TTL_ATTRIBUTE: {"N": str(epoch(item.expires_at))},
    }
    if item.keys:
        encoded["keys"] = {"B": pack_keys(item.keys)}
    if isinstance(item, Tombstone):
        encoded["deleted"] = {"BOOL": True}
        return encoded
    encoded |= {
        "model_version": {"S": item.state.model_version},
        "state": {"B": item.state.blob},
        "steps": {"N": str(item.state.steps)},
        "updated_at": {"S": item.state.updated_at.isoformat()},
    }
    if item.state.reply is not None:
        encoded["reply"] = _encode_reply(item.state.reply)
    return encoded


def _parse_state(item: Item) -> UserState:
    updated_at = datetime.fromisoformat(item["updated_at"]["S"])
    if updated_at.tzinfo is None:
        raise ValueError("updated_at without a time zone")
    return UserState(
        model_version=item["model_version"]["S"],
        blob=bytes(item["state"]["B"]),
        steps=_count(item["steps"]),
        updated_at=updated_at,
        reply=_parse_reply(item["reply"]) if "reply" in item else None,
    )


def parse(item: Item | None, now: datetime) -> Stored:
    """The named state of what a store holds (None: nothing). Never raises: any damage (missing, mistyped or
    absurd values) gives Unreadable."""
    if item is None:
        return Absent()
    guard = {name: item[name] for name in GUARD_ATTRIBUTES if name in item}
    try:
        fields: dict[str, Any] = {
            "revision": _count(item["revision"]),
            "writes": tuple(_chunks(bytes(item["writes"]["B"]), WRITE_ID_BYTES)),
            "keys": _unpack_keys(bytes(item["keys"]["B"])) if "keys" in item else (),
            "expires_at": _from_epoch(int(item[TTL_ATTRIBUTE]["N"])),
            "guard": guard,
        }
        deleted = item.get("deleted", {}).get("BOOL") is True
        state = None if deleted else _parse_state(item)
    except (KeyError, TypeError, ValueError, OverflowError, OSError, struct.error):
        return Unreadable(guard)
    if fields["expires_at"] <= now:
        return Expired(**fields)
    return Tombstone(**fields) if state is None else Live(state=state, **fields)


def _binaries(value: Any, convert: Callable[[Any], Any]) -> Any:
    """`value` with `convert` applied to each binary value in it, however deep."""
    ((kind, raw),) = value.items()
    if kind == "B":
        return {"B": convert(raw)}
    if kind == "M":
        return {"M": {name: _binaries(inner, convert) for name, inner in raw.items()}}
    if kind == "L":
        return {"L": [_binaries(inner, convert) for inner in raw]}
    return {kind: raw}


def to_json(item: Item) -> str:
    """The item in DynamoDB JSON (binary values base64), as DynamoDB's own exports and its wire protocol write it."""
    text = {name: _binaries(value, lambda raw: base64.b64encode(bytes(raw)).decode()) for name, value in item.items()}
    return json.dumps(text, sort_keys=True, separators=(",", ":"))


def from_json(text: str | bytes) -> Item:
    item: Item = {name: _binaries(value, base64.b64decode) for name, value in json.loads(text).items()}
    return item


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "B":
        return len(raw)
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_bytes(v) + 1 for name, v in raw.items())
    if kind == "L":
        return 3 + sum(_value_bytes(v) + 1 for v in raw)
    raise ValueError(f"attribute type {kind} is not used in this table")


def item_bytes(item: Item) -> int:
    """DynamoDB's size of an item: its attribute names and values, as DynamoDB's documentation counts them."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def write_units(old: Item | None, new: Item) -> int:
    """Write request units of a PutItem: one per started KiB of the larger of the old and new item."""
    return math.ceil(max(item_bytes(old) if old else 0, item_bytes(new)) / 1024)


def read_units(item: Item | None) -> int:
    """Read request units of a strongly consistent GetItem: one per started 4 KiB (one for no item)."""
    return max(1, math.ceil((item_bytes(item) if item else 0) / 4096))
