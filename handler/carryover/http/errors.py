"""Every error as HTTP answers it: the status for each code, the headers some carry, and the one body shape
(`ErrorResponse`). Errors that only HTTP can meet (a wrong method, a body too large, ...) are defined here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from carryover.errors import ServiceError

STATUS = {
    "invalid_request": 400,
    "invalid_json": 400,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "state_conflict": 409,
    "idempotency_key_reused": 409,
    "already_applied": 409,
    "outcome_unknown": 409,
    "state_incompatible": 409,
    "payload_too_large": 413,
    "unprocessable": 422,
    "headers_too_large": 431,
    "internal_error": 500,
    "store_unavailable": 503,
    "item_format_unsupported": 503,
}
_WHERE_IT_STANDS = "GET /users/{user_id}/state shows where the state stands"
HINTS = {"already_applied": _WHERE_IT_STANDS, "outcome_unknown": _WHERE_IT_STANDS}
STORE_UNAVAILABLE = (
    "the state store is unavailable; retry shortly, with the same Idempotency-Key to apply the request once"
)
RETRY_AFTER_S = 1


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class ErrorResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    error: ErrorDetail


class MethodNotAllowed(ServiceError):
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class HttpRefusal(ServiceError):
    """A refusal only HTTP meets: "payload_too_large", "headers_too_large" or "request_timeout"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def status(error: ServiceError) -> int:
    return STATUS[error.code]


def headers(error: ServiceError) -> dict[str, str]:
    if isinstance(error, MethodNotAllowed):
        return {"Allow": ", ".join(error.allowed)}
    if STATUS[error.code] == 503:
        return {"Retry-After": str(RETRY_AFTER_S)}
    return {}


def body(error: ServiceError) -> ErrorResponse:
    """The error as HTTP says it: the store's cause stays in the logs; some codes say where to look next."""
    message = STORE_UNAVAILABLE if error.code == "store_unavailable" else error.message
    if error.code in HINTS:
        message = f"{message}; {HINTS[error.code]}"
    return ErrorResponse(error=ErrorDetail(code=error.code, message=message))


def payload(error: ServiceError) -> bytes:
    return body(error).model_dump_json().encode()
