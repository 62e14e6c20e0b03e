"""Every long-running process we start stops on SIGTERM as on SIGINT: a background job of a non-interactive shell
(a CI runner, a script) has SIGINT ignored, and service managers, `kill` and `timeout` send SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOPS = (signal.SIGINT, signal.SIGTERM)


def wait_for_stop() -> None:
    """Blocks until SIGINT or SIGTERM arrives (even where SIGINT was ignored when the process started)."""
    arrived = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        arrived.set()

    for number in STOPS:
        signal.signal(number, stop)
    arrived.wait()


def exit_on_stop() -> None:
    """SIGINT or SIGTERM raises SystemExit from where the process is, so its `finally` blocks and context managers
    stop what it started."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for number in STOPS:
        signal.signal(number, stop)
