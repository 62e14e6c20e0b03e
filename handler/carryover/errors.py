"""The errors the service raises, whatever the way in: each has a stable code and says whether the same request
can succeed if sent again. They carry no transport: the HTTP layer maps each code to a status
(`carryover.http.errors`), a stream consumer to a retry or a failed record."""

from __future__ import annotations


class UnsupportedModel(ValueError):
    """The Keras model has a layer or shape the engines cannot run; raised at export or load."""


class ServiceError(Exception):
    code = "internal_error"
    retryable = False  # True: the same request, sent again later, can succeed

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ServiceError):
    code = "invalid_request"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class Unprocessable(ServiceError):
    """A well-formed request the schema allows, that this model or these limits cannot apply."""

    code = "unprocessable"


class NotFound(ServiceError):
    code = "not_found"


class Forbidden(ServiceError):
    code = "forbidden"


class StateConflict(ServiceError):
    """The user's state kept changing through every retry: other writers were faster."""

    code = "state_conflict"
    retryable = True


class IdempotencyKeyReused(ServiceError):
    code = "idempotency_key_reused"


class AlreadyApplied(ServiceError):
    """A repeat of a keyed request that was applied, whose response is no longer kept."""

    code = "already_applied"


class OutcomeUnknown(ServiceError):
    """A write's answer was lost and too many writes followed it to tell whether it landed."""

    code = "outcome_unknown"


class StateIncompatible(ServiceError):
    code = "state_incompatible"


class StoreUnavailable(ServiceError):
    """The state store cannot be reached or keeps refusing; a write may or may not have landed."""

    code = "store_unavailable"
    retryable = True


class ItemFormatUnsupported(ServiceError):
    """The user's item is of a format a newer release writes: left as it is; the request can succeed later, once
    an instance of that release (or a rollback of its items) serves it."""

    code = "item_format_unsupported"
    retryable = True
