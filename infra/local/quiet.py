"""The local stack's terminal shows one line a request: the handler's structured logs and metrics only with
LOG_LEVEL=DEBUG. Call before anything imports the handler: Powertools reads the level on import."""

from __future__ import annotations

import os


def quiet_unless_debug() -> None:
    os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ.get("LOG_LEVEL") or "ERROR"
    if os.environ["POWERTOOLS_LOG_LEVEL"].upper() != "DEBUG":
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
