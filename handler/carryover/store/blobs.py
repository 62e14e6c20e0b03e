"""States too large for the item, kept beside it, the pattern DynamoDB's documentation gives for large attributes:
each state blob an object named by its content (SHA-256), written before the conditional write that references
it, so the item stays the one commit point: a write that fails or never lands leaves an object nothing
references, a retry writes the same object again, and every exactly-once argument of `item.py` holds unchanged.
The item holds the object's name where it held the blob (`state_ref` for the answering version's, `r` in a
version of `versions`). Objects are immutable; one no item references any more is removed when it is older than
the state's TTL (an S3 lifecycle rule, the local store's hourly sweep), by when any item that referenced it has
expired too.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from carryover.errors import StoreUnavailable
from carryover.observability import logger
from carryover.snapstart import renewed
from carryover.store.item import Attribute, Item

STATE_REF = "state_ref"  # the answering version's state, by its object's name
VERSION_REF = "r"  # another version's state, by its object's name
STATE_REF_BYTES = 80  # what a state kept as an object adds to the item: its name
ROWS_REF = "o"  # a run of logged rows (`logged`), by its object's name


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Writes the object (the same key, the same bytes: writing it again changes nothing)."""

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The objects that exist of `keys`."""

    @abstractmethod
    def renew(self) -> None:
        """Makes the connections again, after a snapshot's restore (local files keep their own)."""


class S3Blobs(BlobStore):
    """Objects in an S3 bucket under `prefix` (the stack's state bucket, private and encrypted)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "states/") -> None:
        self._client, self._bucket, self._prefix = client, bucket, prefix

    def renew(self) -> None:
        self._client = renewed(self._client)

    def put(self, key: str, data: bytes) -> None:
        with _unavailable("put_object"):
            self._client.put_object(Bucket=self._bucket, Key=self._prefix + key, Body=data)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = {}
        for key in dict.fromkeys(keys):
            data = self._get(key)
            if data is not None:
                found[key] = data
        return found

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            with _unavailable("get_object", passing=ClientError):
                body: bytes = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)["Body"].read()
                return body
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise _store_unavailable("get_object", error) from error
            logger.warning("state object missing", extra={"key": key})
            return None


def _store_unavailable(operation: str, error: Exception) -> StoreUnavailable:
    logger.warning("state objects unavailable", extra={"operation": operation, "cause": type(error).__name__})
    return StoreUnavailable(type(error).__name__)


@contextmanager
def _unavailable(operation: str, passing: type[Exception] | None = None) -> Iterator[None]:
    """botocore's errors as the store's (but `passing`, which the caller tells apart)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        if passing is not None and isinstance(error, passing):
            raise
        raise _store_unavailable(operation, error) from error


def _places(item: Item) -> list[tuple[Item, str, str]]:
    """Where an item holds blobs that may be kept as objects: (attributes, the blob's name, its reference's)."""
    found: list[tuple[Item, str, str]] = [(item, "state", STATE_REF)]
    found += [(fields["M"], "s", VERSION_REF) for fields in item.get("versions", {}).get("M", {}).values()]
    found += [(run["M"], "r", ROWS_REF) for run in item.get("logged", {}).get("L", [])]
    return found


def offload(item: Item, blobs: BlobStore) -> None:
    """Moves `item`'s state blobs (and the rows it logs) into `blobs`, the item keeping their names (before the item
    is written)."""
    for attributes, name, ref in _places(item):
        if name in attributes:
            data = bytes(attributes.pop(name)["B"])
            blobs.put(key := blob_key(data), data)
            attributes[ref] = {"S": key}


def resolve(item: Item, blobs: BlobStore | None, logged_rows: bool = True) -> Item:
    """`item` with the blobs it names fetched back in place (one missing leaves the item unreadable); without
    `logged_rows`, the rows its write logged, when objects, are left out of it rather than fetched."""
    if not logged_rows and any(ROWS_REF in run["M"] for run in item.get("logged", {}).get("L", [])):
        del item["logged"]
    named = [(attributes, name, ref) for attributes, name, ref in _places(item) if ref in attributes]
    if not named or blobs is None:
        return item
    found = blobs.get_many([attributes[ref]["S"] for attributes, _, ref in named])
    for attributes, name, ref in named:
        if attributes[ref]["S"] in found:
            attributes[name] = _blob(found[attributes.pop(ref)["S"]])
    return item


def without_states(item: Item) -> Item:
    """A copy of `item` for what reads all but its states (the row log): each state kept as an object stands there
    as an empty blob, never fetched; the rows its write logged are left to `resolve`."""
    copied = dict(item)
    if "versions" in copied:
        copied["versions"] = {"M": {v: {"M": dict(f["M"])} for v, f in copied["versions"]["M"].items()}}
    if "logged" in copied:
        copied["logged"] = {"L": [{"M": dict(run["M"])} for run in copied["logged"]["L"]]}
    for attributes, name, ref in _places(copied):
        if ref != ROWS_REF and ref in attributes:
            del attributes[ref]
            attributes[name] = _blob(b"")
    return copied


def _blob(data: bytes) -> Attribute:
    return {"B": data}
