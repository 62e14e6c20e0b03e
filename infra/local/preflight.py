"""Checks what `make run` needs before any slow step, with the system's Python and its standard library only:
the port is free, a given MODEL exists (a file, or a SavedModel directory) and is no weights-only `.h5`, and a
`.keras` file has the one input served (read from its config in a second, where loading it would take twenty).

    python3 infra/local/preflight.py PORT [MODEL]
"""

from __future__ import annotations

import json
import mmap
import socket
import sys
import zipfile
from pathlib import Path

MISSING = "no such file or directory; give the path of a .keras or .h5 file, or of a SavedModel directory"


def problems(port: int, model: str | None) -> list[str]:
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the server binds: a port whose last connections are in TIME-WAIT (a server just stopped) is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            found.append(f"port {port} is in use: stop what listens there, or choose another with PORT=...")
    if model and not Path(model).exists():
        found.append(f"MODEL={model}: {MISSING}")
    elif model and weights_only(Path(model)):
        found.append(f"MODEL={model}: an HDF5 file without a model config (weights only?): save the whole model")
    elif model and (inputs := keras_inputs(Path(model))) and inputs > 1:
        found.append(f"MODEL={model}: the model has {inputs} inputs; carryover serves models with one input")
    return found


def weights_only(path: Path) -> bool:
    """Whether `path` is an HDF5 file holding no model config anywhere (what `save_weights` writes): the name of
    the attribute a saved model has is nowhere in its bytes."""
    try:
        with path.open("rb") as file:
            if file.read(8) != b"\x89HDF\r\n\x1a\n":
                return False
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(b"model_config") < 0
    except (OSError, ValueError):
        return False


def keras_inputs(path: Path) -> int | None:
    """How many inputs a `.keras` file's model takes, from its config.json; None when that cannot be told
    here (another format, or a config this does not know: the exporter then says what it finds)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None
    layers = config.get("config", {}).get("input_layers") if isinstance(config, dict) else None
    if not isinstance(layers, list) or not layers:
        return None
    return len(layers) if isinstance(layers[0], list) else 1  # one input is stored as [name, 0, 0]


def main() -> None:
    given, model = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    if not given.isdigit() or not 0 <= int(given) <= 65535:
        sys.exit(f"cannot start: PORT={given}: give a port number from 0 to 65535 (0: any free one)")
    found = problems(int(given), model)
    for problem in found:
        print(f"cannot start: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)


if __name__ == "__main__":
    main()
