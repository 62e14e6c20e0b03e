"""The fast tier (`make test-fast`): the pure unit tests, on the small committed bundle, never importing TensorFlow.
Every test here is marked `fast`, which serves the small bundle by default; run alone (`-m fast`), each test
fails if TensorFlow was imported by then."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/unit/fast/" in str(item.path):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def no_tensorflow(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.config.getoption("markexpr") == "fast":
        assert "tensorflow" not in sys.modules, "the fast tier imported TensorFlow: a model built with Keras was used"
