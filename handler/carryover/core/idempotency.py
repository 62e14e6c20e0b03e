"""A request key seen before: the same request is answered as it was the first time (while its reply is
kept), or recognised as applied; the same key with another request is refused."""

from __future__ import annotations

from carryover.core.domain import KeyRecord, Reply
from carryover.errors import AlreadyApplied, IdempotencyKeyReused
from carryover.store.item import Live, Stored


def earlier_reply(
    request_key: str,
    record: KeyRecord,
    known: tuple[KeyRecord, ...],
    stored: Stored,
    model_version: str,
    fingerprints: frozenset[bytes],
) -> Reply | None:
    """The reply recorded for this key by this model version; None for a key not seen within the window.
    Raises when the key was used with another request, or its request was applied and its reply is no longer
    kept (or was another model version's)."""
    earlier = next((seen for seen in known if seen.key == record.key), None)
    if earlier is None:
        return None
    if earlier.fingerprint not in fingerprints:  # the request's digests, as each format recorded them
        raise IdempotencyKeyReused(f"Idempotency-Key {request_key!r} was used with another request body")
    reply = stored.state.reply if isinstance(stored, Live) else None
    if reply is None or reply.key != record.key or reply.model_version != model_version:
        raise AlreadyApplied(
            f"Idempotency-Key {request_key!r}: this request was applied earlier; its response is kept only until "
            "the user's next request"
        )
    return reply
