"""What a write may record in the user's item beside the states, and the one rule a request meets for it: its
answer, when recorded (a keyed request's, for its replay; a stream write's, until published), and its rows, when
the row log is on, must fit the room the item has for them, or the request is refused up front."""

from __future__ import annotations

from dataclasses import dataclass

from carryover.core.domain import FLOAT32_BYTES, REPLY_LIMIT_BYTES
from carryover.errors import Unprocessable
from carryover.manifest import Manifest
from carryover.requests import counted


@dataclass(frozen=True)
class ItemRoom:
    """Bytes of an item for what a write records: its answer, the stream answers kept until published, and the
    rows it applied (0: the row log is off)."""

    reply: int = REPLY_LIMIT_BYTES
    kept: int = REPLY_LIMIT_BYTES
    logged: int = 0

    @property
    def stream_answer(self) -> int:
        """The most a stream write's answer may hold: recorded as the newest, then kept until published."""
        return min(self.reply, self.kept)

    def most_rows(self, manifest: Manifest, answer_limit: int | None) -> int:
        """The most timesteps one request may carry: its answer within `answer_limit` bytes (None: not recorded),
        its rows within what the row log has room for."""
        limits = [] if answer_limit is None else [_answered_rows(manifest, answer_limit)]
        if self.logged:
            limits.append(self.logged // (manifest.input.features * FLOAT32_BYTES))
        return min(limits, default=10**9)

    def check(self, manifest: Manifest, rows: int, answer_limit: int | None, what: str) -> None:
        """Refuses `what` (a keyed request, a stream record, a request) carrying more rows than fit."""
        most = self.most_rows(manifest, answer_limit)
        if rows <= most:
            return
        reasons = []
        if answer_limit is not None and rows > _answered_rows(manifest, answer_limit):
            reasons.append(f"its answer is recorded, {answer_limit} bytes at most")
        if self.logged and rows * manifest.input.features * FLOAT32_BYTES > self.logged:
            reasons.append(f"its rows are logged with its write, {self.logged} bytes at most")
        raise Unprocessable(
            f"inputs: {what} may carry at most {counted(most, 'timestep')} for this model ({'; '.join(reasons)}); "
            "send fewer rows in each"
        )


def _answered_rows(manifest: Manifest, limit: int) -> int:
    """The most timesteps whose answer fits `limit` bytes (0: not even one)."""
    last_only = manifest.output_values(0)
    per_row = manifest.output_values(1) - last_only
    room = limit // FLOAT32_BYTES - last_only
    return room // per_row if per_row else (10**9 if room >= 0 else 0)
