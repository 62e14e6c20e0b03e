"""Native libraries' start-up notices kept off the terminal, every other line of stderr kept, whatever the threads."""

from __future__ import annotations

import os
import threading

import numpy as np

from carryover.bundle import ModelBundle
from carryover.native import notices_dropped
from tests.conftest import SMALL_BUNDLE


def test_an_interpreter_made_says_nothing_on_stderr(capfd):
    bundle = ModelBundle.load(SMALL_BUNDLE, "litert")
    row = np.full((1, bundle.manifest.input.features), 0.1, np.float32)
    other = threading.Thread(target=bundle.engine.run_many, args=([row], [bundle.manifest.zero_state()]))
    other.start()  # an interpreter of its own, made on its first use
    bundle.engine.run_many([row], [bundle.manifest.zero_state()])
    other.join()
    assert "XNNPACK" not in capfd.readouterr().err


def test_only_the_notices_are_dropped(capfd):
    with notices_dropped():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nour own line\n")
    assert capfd.readouterr().err == "our own line\n"


def test_threads_dropping_notices_at_once_leave_stderr_as_it_was(capfd):
    """Each redirection of fd 2 ends before the next begins: one thread's end never restores another's capture."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with notices_dropped():
            first_in.set()
            second_in.wait(0.5)  # the second, entering meanwhile, would save this one's capture as stderr
        first_out.set()

    def second() -> None:
        first_in.wait()
        with notices_dropped():
            second_in.set()
            first_out.wait(5)  # and, ending last, leave that capture in stderr's place

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.write(2, b"after both\n")
    assert capfd.readouterr().err.endswith("after both\n")
