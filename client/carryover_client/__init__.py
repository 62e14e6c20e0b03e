"""A client for a carryover API: streams a user's sequence, each request applied exactly once.

    from carryover_client import Client, SigV4
    api = Client("https://abc123.execute-api.eu-west-1.amazonaws.com", auth=SigV4("eu-west-1"))
    for answer in api.stream("alice", rows, chunk=10):
        print(answer.steps, answer.outputs)

Every request carries an Idempotency-Key, the same on each of its retries, so a retry after a timeout, a 503
or a conflict is never applied twice. Retries back off exponentially with jitter and honour Retry-After.
Standard library and botocore (for SigV4) only.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

__all__ = ["ApiError", "Bearer", "Client", "Prediction", "Put", "Records", "SigV4"]

RETRIED_STATUSES = {429, 502, 503, 504}
RETRIED_CODES = {"state_conflict"}  # a 409 that a later attempt can get past; other 409s are answers


class ApiError(Exception):
    """The API refused the request (or kept failing): its status, error code and message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")  # 0: never sent
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def _numbers(value: Any) -> Any:
    """Rows as JSON numbers, however nested (numpy values included)."""
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_numbers(inner) for inner in value]
    return float(value)


@dataclass(frozen=True)
class Prediction:
    outputs: dict[str, list[list[float]]]
    steps: int  # the user's timesteps since their state was new or reset
    state: str  # where this request started from: new, continued or reset
    model: dict[str, str]
    replayed: bool  # True when the answer is the recorded one of an earlier attempt with the same key
    real_rows: list[int] | None = None  # window mode: how many rows of each timestep's window were the user's
    versions: list[dict[str, Any]] | None = None  # a bundle keeping a second model: where its state started
    seen: int | None = None  # the rows the answering version's state has seen (steps: all of them)


class Auth(Protocol):
    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]: ...


@dataclass(frozen=True)
class Bearer:
    """AuthMode JWT: the token API Gateway checks; the path's user must be its subject."""

    token: str

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class SigV4:
    """AuthMode IAM: requests signed with AWS credentials (the standard chain unless given)."""

    region: str
    credentials: Any = None  # botocore Credentials; None: environment, profile, instance role, ...
    _signer: Any = field(default=None, init=False, repr=False)

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.session import Session

        if self._signer is None:
            credentials = self.credentials or Session().get_credentials()
            if credentials is None:
                raise ApiError(0, "no_credentials", "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID")
            self._signer = SigV4Auth(credentials, "execute-api", self.region)
        request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
        self._signer.add_auth(request)
        return {name.lower(): value for name, value in request.headers.items()}


class Client:
    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        timeout: float = 30.0,
        retries: int = 6,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth, self._timeout, self._retries, self._backoff, self._sleep = auth, timeout, retries, backoff, sleep

    def predict(self, user_id: str, inputs: Sequence[Any], reset: bool = False, key: str | None = None) -> Prediction:
        """Applies `inputs` (one row per timestep, or one token id, or one nested frame) on top of the user's
        state, once: every retry carries the same Idempotency-Key (a new one unless given)."""
        body = json.dumps({"inputs": _numbers(list(inputs)), "reset": reset}).encode()
        headers = {"idempotency-key": key or uuid.uuid4().hex}
        answer, reply_headers = self._request("POST", f"/users/{quote(user_id, safe='')}/predict", body, headers)
        return Prediction(
            outputs=answer["outputs"],
            steps=answer["steps"],
            state=answer["state"],
            model=answer["model"],
            replayed=reply_headers.get("idempotent-replayed") == "true",
            real_rows=answer.get("real_rows"),
            versions=answer.get("versions"),
            seen=answer.get("seen"),
        )

    def stream(self, user_id: str, rows: Sequence[Any], chunk: int = 10, reset: bool = False) -> Iterator[Prediction]:
        """Sends `rows` in chunks of `chunk` timesteps, in order, each chunk once; `reset` starts from zeros."""
        for start in range(0, len(rows), chunk):
            yield self.predict(user_id, rows[start : start + chunk], reset=reset and start == 0)

    def state(self, user_id: str) -> dict[str, Any] | None:
        """The user's saved state (model, steps, times), or None when there is none."""
        try:
            state: dict[str, Any] = self._request("GET", f"/users/{quote(user_id, safe='')}/state")[0]
            return state
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def delete(self, user_id: str) -> None:
        self._request("DELETE", f"/users/{quote(user_id, safe='')}/state")

    def model(self) -> dict[str, Any]:
        model: dict[str, Any] = self._request("GET", "/model")[0]
        return model

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self._request("GET", "/health")[0]
        return health

    def _request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[Any, dict[str, str]]:
        """One logical request: retried on timeouts, connection failures, 429, 5xx gateways and state
        conflicts, with jittered exponential backoff, or the server's Retry-After when it gives one."""
        url = self.base_url + path
        for attempt in range(self._retries + 1):
            wait = min(10.0, self._backoff * 2**attempt) * random.uniform(0.5, 1.0)
            try:
                return self._send(method, url, body, headers or {})
            except ApiError as error:
                retried = error.status in RETRIED_STATUSES or (error.status == 409 and error.code in RETRIED_CODES)
                if not retried or attempt == self._retries:
                    raise
                wait = error.retry_after if error.retry_after is not None else wait
            except (TimeoutError, ConnectionError, urllib.error.URLError) as error:
                if attempt == self._retries:
                    raise ApiError(0, "unreachable", f"{method} {url}: {error}") from error
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
        sent = {"content-type": "application/json", **headers}
        if self._auth is not None:
            sent |= self._auth.headers(method, url, body)
        request = urllib.request.Request(url, data=body or None, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                raw, reply = response.read(), dict(response.headers)
        except urllib.error.HTTPError as failed:
            raw, reply = failed.read(), {k.lower(): v for k, v in failed.headers.items()}
            try:
                detail = json.loads(raw)["error"]
                code, message = detail["code"], detail["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", raw.decode(errors="replace")[:200]
            retry_after = reply.get("retry-after", "")
            raise ApiError(failed.code, code, message, float(retry_after) if retry_after.isdigit() else None) from None
        return (json.loads(raw) if raw else None), {k.lower(): v for k, v in reply.items()}


@dataclass(frozen=True)
class Put:
    """Where a record landed on the stream: its shard and sequence number (the record's identity)."""

    shard_id: str
    sequence_number: str


class Records:
    """Puts records on the stream the stream function applies: `{"user_id", "inputs", "reset"}` JSON, the user id
    as partition key, so that a user's records stay in order (one user's `put_many` goes out as one PutRecord
    each, in order: PutRecords may reorder the records it retries). `endpoint_url`: a Kinesis-compatible server
    (the local stack's kinesalite); credentials and region come from the environment, as for SigV4, except for a
    server on this machine, which takes any: placeholders there when the environment has none."""

    def __init__(self, stream_name: str, region: str | None = None, endpoint_url: str | None = None) -> None:
        from botocore.session import Session

        self._stream = stream_name
        session = Session()
        local = endpoint_url is not None and urlsplit(endpoint_url).hostname in ("127.0.0.1", "localhost", "::1")
        key = secret = None
        if local and session.get_credentials() is None:
            key = secret = "local"
        if local and not region and not session.get_config_variable("region"):
            region = "us-east-1"
        self._kinesis: Any = session.create_client(
            "kinesis",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def put(self, user_id: str, inputs: Sequence[Any], reset: bool = False) -> Put:
        """One record: `inputs` are rows of features (lists, or a numpy array), or token ids."""
        record = {"user_id": user_id, "inputs": inputs, "reset": reset}
        data = json.dumps(record, default=lambda value: value.tolist())  # numpy arrays and numbers
        answer = self._kinesis.put_record(StreamName=self._stream, Data=data.encode(), PartitionKey=user_id)
        return Put(answer["ShardId"], answer["SequenceNumber"])

    def put_many(self, user_id: str, rows: Any, chunk: int = 10) -> list[Put]:
        """The user's rows (a list of rows, or a numpy array) as records of `chunk` rows each, in order."""
        return [self.put(user_id, rows[start : start + chunk]) for start in range(0, len(rows), chunk)]
