"""Errors the service answers with, each with its HTTP status and a stable code; `ErrorResponse` is the one
shape every error body has."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class ErrorResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    error: ErrorDetail


class UnsupportedModel(ValueError):
    """The Keras model has a layer or shape the engines cannot run; raised at export or load."""


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(code=self.code, message=self.message))

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ApiError):
    status = 400
    code = "invalid_request"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class Unprocessable(ApiError):
    """A well-formed request the schema allows, that this model or these limits cannot apply."""

    status = 422
    code = "unprocessable"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"


class HeadersTooLarge(ApiError):
    status = 431
    code = "headers_too_large"


class StateConflict(ApiError):
    status = 409
    code = "state_conflict"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class IdempotencyKeyReused(ApiError):
    status = 409
    code = "idempotency_key_reused"


class AlreadyApplied(ApiError):
    """A repeat of a keyed request that was applied, whose response is no longer kept."""

    status = 409
    code = "already_applied"


class OutcomeUnknown(ApiError):
    """A write's answer was lost and too many writes followed it to tell whether it landed."""

    status = 409
    code = "outcome_unknown"


class StateIncompatible(ApiError):
    status = 409
    code = "state_incompatible"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class StoreUnavailable(ApiError):
    status = 503
    code = "store_unavailable"
    retry_after_s = 1
    MESSAGE = "the state store is unavailable; retry shortly, with the same Idempotency-Key to apply the request once"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
