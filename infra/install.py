"""Installs a pinned set of packages into the project's virtual environment, saying as it goes what it does:
how many packages, each one as pip takes it, the unpacking (the long part: TensorFlow), and how long it took.
Standard library only: it runs before the environment exists.

    python3 infra/install.py VENV LOCK WHAT
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

PIP = "pip==25.3"
PACKAGE = re.compile(
    r"^(?:Collecting |Requirement already satisfied: )(?P<name>[A-Za-z0-9._-]+?)(?:[=<>!~ ]|$)"
    r"|^Processing (?:\S*/)?(?P<wheel>[A-Za-z0-9._]+)-"  # a wheel from a local index: name-version-...whl
)


def pins(lock: Path) -> int:
    return sum(1 for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#"))


class Progress:
    """One updating line on a terminal; a line every ten packages and every 15 s of unpacking elsewhere."""

    def __init__(self, total: int) -> None:
        self.total, self.seen, self.tty = total, 0, sys.stdout.isatty()
        self.unpacking: float | None = None

    def package(self, name: str) -> None:
        self.seen += 1
        if self.tty:
            print(f"\r    {self.seen}/{self.total} {name:<48}", end="", flush=True)
        elif self.seen % 10 == 0 or self.seen == self.total:
            print(f"    {self.seen}/{self.total} packages read ({name})", flush=True)

    def unpack(self) -> None:
        self.unpacking = time.monotonic()
        newline = "\n" if self.tty else ""
        print(f"{newline}    unpacking {self.seen} packages (TensorFlow takes a while) ...", flush=True)

    def tick(self, stop: threading.Event) -> None:
        while not stop.wait(15):
            if self.unpacking is not None:
                print(f"    ... still unpacking, {time.monotonic() - self.unpacking:.0f} s", flush=True)


def install(venv: Path, lock: Path, what: str) -> None:
    python = venv / "bin" / "python"
    started = time.monotonic()
    print(f"==> installing {pins(lock)} pinned packages for {what} into {venv} (once)", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PIP], check=True)
    progress, stop = Progress(pins(lock)), threading.Event()
    ticker = threading.Thread(target=progress.tick, args=(stop,), daemon=True)
    ticker.start()
    command = [str(python), "-m", "pip", "install", "--no-deps", "--progress-bar", "off", "-r", str(lock)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            if found := PACKAGE.match(line):
                progress.package(found["name"] or found["wheel"])
            elif line.startswith("Installing collected packages"):
                progress.unpack()
            elif line.startswith("ERROR") or "error:" in line:
                print(line.rstrip(), flush=True)
    stop.set()
    if pip.returncode:
        sys.exit(f"install failed (pip exited {pip.returncode}): see the lines above; run `make` again to retry")
    print(f"==> installed in {time.monotonic() - started:.0f} s", flush=True)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036  # runs on whatever python3 the machine has
        sys.exit("Python 3.11+ is required (set PYTHON=python3.11 or newer)")
    venv, lock, what = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    install(venv, lock, what)


if __name__ == "__main__":
    main()
