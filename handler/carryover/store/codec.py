"""The item (`item.py`) as DynamoDB attributes, both ways, and what DynamoDB bills for it. Every store keeps
these attributes, so one codec serves them all."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, get_args

from carryover.core.domain import (
    DIGEST_BYTES,
    Covered,
    KeyRecord,
    ModelState,
    Positions,
    Reply,
    Role,
    StateOrigin,
    UserState,
    VersionReport,
    digest,
)
from carryover.core.history import Run
from carryover.store.item import (
    FORMAT,
    WRITE_ID_BYTES,
    Absent,
    Attribute,
    Expired,
    Item,
    Live,
    Stored,
    Tombstone,
    Unreadable,
    Unsupported,
    Written,
)

PARTITION_KEY = "user_id"
SORT_KEY = "model"
TTL_ATTRIBUTE = "expires_at"
GUARD_ATTRIBUTES = ("revision", "writes", "write_id")  # write_id: format 1's single write id
MAX_COUNT = 2**53  # steps and revisions beyond this are damage, not data
_KEY_RECORD = struct.Struct(f"<{DIGEST_BYTES}s{DIGEST_BYTES}sI")  # key digest, request fingerprint, epoch seconds
_ORIGINS: tuple[StateOrigin, ...] = get_args(StateOrigin)
_ROLES: tuple[Role, ...] = get_args(Role)


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


def _encode_report(report: VersionReport) -> Attribute:
    fields = {"v": {"S": report.version}, "r": {"S": report.role}, "o": {"S": report.origin}}
    return {"M": fields | {"n": {"N": str(report.steps)}}}


def _parse_report(attribute: Attribute) -> VersionReport:
    fields = attribute["M"]
    role, origin = fields["r"]["S"], _origin(fields["o"]["S"])
    if role not in _ROLES:
        raise ValueError(f"unknown role {role!r}")
    return VersionReport(version=fields["v"]["S"], role=role, origin=origin, steps=_count(fields["n"]))


def _origin(value: str) -> StateOrigin:
    if value not in _ORIGINS:
        raise ValueError(f"unknown origin {value!r}")
    origin: StateOrigin = value
    return origin


def _encode_reply(reply: Reply) -> Attribute:
    fields: dict[str, Attribute] = {
        "k": {"B": reply.key},
        "v": {"S": reply.model_version},
        "s": {"N": str(reply.steps)},
        "o": {"S": reply.origin},
        "n": {"N": str(reply.rows)},
        "y": {"B": reply.outputs},
    }
    if reply.others:
        fields["c"] = {"L": [_encode_report(report) for report in reply.others]}
    if reply.covered is not None:
        fields |= {"q": {"S": reply.covered.shard}, "r": {"B": _pack_records(reply.covered.records)}}
    if reply.seen is not None:
        fields["e"] = {"N": str(reply.seen)}
    return {"M": fields}


def _pack_records(records: tuple[tuple[int, int], ...]) -> bytes:
    """Each record's sequence number (the first in full, then each one's difference from the one before) and rows,
    as LEB128 varints: a few bytes a record, however long Kinesis' sequence numbers are."""
    values, previous = [], 0
    for sequence, rows in records:
        values += [sequence - previous, rows]
        previous = sequence
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _unpack_records(blob: bytes) -> tuple[tuple[int, int], ...]:
    values, value, shift = [], 0, 0
    for byte in blob:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
    if shift or not values or len(values) % 2:
        raise ValueError("records of the wrong length")
    sequences = list(accumulate(values[::2]))
    return tuple(zip(sequences, values[1::2], strict=True))


def _parse_covered(fields: Mapping[str, Any]) -> Covered | None:
    return Covered(fields["q"]["S"], _unpack_records(bytes(fields["r"]["B"]))) if "q" in fields else None


def _parse_reply(attribute: Attribute) -> Reply:
    fields = attribute["M"]
    return Reply(
        key=bytes(fields["k"]["B"]),
        model_version=fields["v"]["S"],
        steps=_count(fields["s"]),
        origin=_origin(fields["o"]["S"]),
        rows=_count(fields["n"]),
        outputs=bytes(fields["y"]["B"]),
        others=tuple(_parse_report(report) for report in fields["c"]["L"]) if "c" in fields else (),
        covered=_parse_covered(fields),
        seen=_count(fields["e"]) if "e" in fields else None,
    )


def _encode_state(state: UserState) -> Item:
    answering = state.answering
    if answering.at != state.stream:
        raise ValueError("the answering model's state must be current")
    encoded: Item = {
        "model_version": {"S": answering.version},
        "state": {"B": answering.blob},
        "steps": {"N": str(state.stream)},
        "updated_at": {"S": state.updated_at.isoformat()},
    }
    if answering.since:
        encoded["since"] = {"N": str(answering.since)}
    if answering.kind:
        encoded["kind"] = {"S": answering.kind}
    others = {model.version: _encode_other(model) for model in state.models[1:]}
    if others:
        encoded["versions"] = {"M": others}
    if state.history:
        encoded["history"] = {"B": state.history}
    if state.reply is not None:
        encoded["reply"] = _encode_reply(state.reply)
    if state.outbox:
        encoded["outbox"] = {"L": [_encode_reply(reply) for reply in state.outbox]}
    return encoded


def _encode_other(model: ModelState) -> Attribute:
    fields: dict[str, Attribute] = {"s": {"B": model.blob}, "b": {"N": str(model.since)}, "a": {"N": str(model.at)}}
    return {"M": fields | ({"k": {"S": model.kind}} if model.kind else {})}


def encode(key: Item, item: Written) -> Item:
    """The attributes a store keeps for `item` under `key`, in this release's format."""
    encoded: Item = key | {
        "format": {"N": str(FORMAT)},
        "revision": {"N": str(item.revision)},
        "writes": {"B": b"".join(item.writes)},
        TTL_ATTRIBUTE: {"N": str(epoch(item.expires_at))},
    }
    if item.keys:
        encoded["keys"] = {"B": pack_keys(item.keys)}
    if item.applied.last:
        encoded["applied"] = {"M": {shard: {"S": str(at)} for shard, at in item.applied.last.items()}}
    if item.created:
        encoded["created"] = {"N": str(item.created)}
    if isinstance(item, Tombstone):
        return encoded | {"deleted": {"BOOL": True}}
    if item.logged:
        encoded["logged"] = {"L": [{"M": {"f": {"N": str(run.start)}, "r": {"B": run.blob}}} for run in item.logged]}
    return encoded | _encode_state(item.state)


def _parse_models(item: Item, stream: int) -> tuple[ModelState, ...]:
    answering = ModelState(
        version=item["model_version"]["S"],
        blob=bytes(item["state"]["B"]),
        since=_count(item["since"]) if "since" in item else 0,
        at=stream,
        kind=item["kind"]["S"] if "kind" in item else None,
    )
    others = [
        ModelState(
            version=version,
            blob=bytes(fields["M"]["s"]["B"]),
            since=_count(fields["M"]["b"]),
            at=_count(fields["M"]["a"]),
            kind=fields["M"]["k"]["S"] if "k" in fields["M"] else None,
        )
        for version, fields in item.get("versions", {}).get("M", {}).items()
    ]
    return (answering, *others)


def _parse_state(item: Item) -> UserState:
    updated_at = datetime.fromisoformat(item["updated_at"]["S"])
    if updated_at.tzinfo is None:
        raise ValueError("updated_at without a time zone")
    stream = _count(item["steps"])
    return UserState(
        stream=stream,
        models=_parse_models(item, stream),
        updated_at=updated_at,
        reply=_parse_reply(item["reply"]) if "reply" in item else None,
        history=bytes(item["history"]["B"]) if "history" in item else b"",
        outbox=tuple(_parse_reply(reply) for reply in item["outbox"]["L"]) if "outbox" in item else (),
    )


def _receipts(item: Item) -> tuple[KeyRecord, ...]:
    """Format 1's idempotency receipts (key -> {h: SHA-256 of the request, hex; t: epoch seconds}) as key records:
    a retry of a request an earlier release applied is recognised. Their responses are not replayed."""
    records = [
        KeyRecord(
            digest(key), bytes.fromhex(fields["M"]["h"]["S"])[:DIGEST_BYTES], _from_epoch(int(fields["M"]["t"]["N"]))
        )
        for key, fields in item["receipts"]["M"].items()
    ]
    return tuple(sorted(records, key=lambda record: record.at, reverse=True))


def _format(item: Item) -> int:
    """The item's format: its own number, or the one its attributes show (earlier releases wrote none)."""
    if "format" in item:
        return _count(item["format"])
    return 2 if "writes" in item else 1


def _history_fields(item: Item) -> tuple[tuple[bytes, ...], tuple[KeyRecord, ...]]:
    """Write ids and request keys, as formats 2-3 (`writes`, `keys`) or format 1 (`write_id`, `receipts`) hold them."""
    if "writes" in item:
        keys = _unpack_keys(bytes(item["keys"]["B"])) if "keys" in item else ()
        return tuple(_chunks(bytes(item["writes"]["B"]), WRITE_ID_BYTES)), keys
    if item["write_id"]["S"] == "":
        raise ValueError("no write id")
    return (), _receipts(item) if "receipts" in item else ()


def parse(item: Item | None, now: datetime) -> Stored:
    """The named state of what a store holds (None: nothing), whichever release wrote it. Never raises: any damage
    (missing, mistyped or absurd values) gives Unreadable."""
    if item is None:
        return Absent()
    guard = {name: item[name] for name in GUARD_ATTRIBUTES if name in item}
    try:
        found = _format(item)
        if found > FORMAT:
            return Unsupported(found, guard)
        writes, keys = _history_fields(item)
        fields: dict[str, Any] = {
            "revision": _count(item["revision"]),
            "writes": writes,
            "keys": keys,
            "applied": Positions({shard: int(at["S"]) for shard, at in item.get("applied", {"M": {}})["M"].items()}),
            "expires_at": _from_epoch(int(item[TTL_ATTRIBUTE]["N"])),
            "guard": guard,
            "created": _count(item["created"]) if "created" in item else 0,
        }
        deleted = item.get("deleted", {}).get("BOOL") is True
        state = None if deleted else _parse_state(item)
        logged = tuple(
            Run(_count(run["M"]["f"]), bytes(run["M"]["r"]["B"])) for run in item.get("logged", {}).get("L", [])
        )
    except (KeyError, TypeError, ValueError, OverflowError, OSError, struct.error):
        return Unreadable(guard)
    if fields["expires_at"] <= now:
        return Expired(**fields)
    return Tombstone(**fields) if state is None else Live(state=state, logged=logged, **fields)


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
