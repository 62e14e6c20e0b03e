"""Native libraries' start-up notices kept off the terminal and the logs: TensorFlow's oneDNN and absl lines at
import, LiteRT's "Created TensorFlow Lite XNNPACK delegate" when an interpreter is made. They are written by C++
straight to file descriptor 2, past Python's logging, so they are caught there; every other line passes."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOISE = re.compile(
    rb"oneDNN custom operations are on|absl::InitializeLog\(\) is called|cpu_feature_guard\.cc|"
    rb"^To enable the following instructions|Created TensorFlow Lite XNNPACK delegate"
)

_REDIRECTING = threading.RLock()  # fd 2 is the process's: threads binding interpreters at once take turns


@contextmanager
def notices_dropped() -> Iterator[None]:
    """What is written to stderr meanwhile, by Python or native code, written after it but the notices."""
    with _REDIRECTING, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not NOISE.search(line)]
            if kept:
                os.write(2, b"".join(kept))
