"""Checks what `make run` needs before any slow step, with the system's Python and its standard library only:
the port is free, and a given MODEL exists (a file, or a SavedModel directory).

    python3 infra/local/preflight.py PORT [MODEL]
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

MISSING = "no such file or directory; give the path of a .keras or .h5 file, or of a SavedModel directory"


def problems(port: int, model: str | None) -> list[str]:
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            found.append(f"port {port} is in use: stop what listens there, or choose another with PORT=...")
    if model and not Path(model).exists():
        found.append(f"MODEL={model}: {MISSING}")
    return found


def main() -> None:
    port, model = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)
    for problem in problems(port, model):
        print(f"cannot start: {problem}", file=sys.stderr)
    if problems(port, model):
        sys.exit(1)


if __name__ == "__main__":
    main()
