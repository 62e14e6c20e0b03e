"""The stream position is no new item format: the previous release's own codec (read from its commit) reads an
item this release wrote after stream records, as the same state, steps and keys."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from carryover.store.codec import encode, item_key, parse
from carryover.store.dynamodb import utc_now
from carryover.store.item import Absent, KeyRecord, Lifetimes, UserState, Write, digest, successor
from infra.table import TEMPLATE

PREVIOUS = "13db9fa"  # the release before the stream path
ROOT = TEMPLATE.parent


def previous_codec(tmp_path: Path) -> ModuleType:
    """That release's store/item.py and store/codec.py, as a package of their own."""
    package = tmp_path / "previous" / "store"
    package.mkdir(parents=True)
    for name in ("item", "codec"):
        shown = subprocess.run(["git", "show", f"{PREVIOUS}:handler/carryover/store/{name}.py"], cwd=ROOT,
                               capture_output=True, text=True, check=False)  # fmt: skip
        if shown.returncode != 0:
            pytest.fail(f"release {PREVIOUS} is not in this repository's history (a shallow clone?): {shown.stderr}")
        (package / f"{name}.py").write_text(shown.stdout.replace("carryover.store.", "previous.store."))
    for directory in (package.parent, package):
        (directory / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        spec = importlib.util.find_spec("previous.store.codec")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["previous.store.codec"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(tmp_path))


def test_the_previous_release_reads_an_item_with_stream_positions(tmp_path):
    now = utc_now()
    key = KeyRecord(digest("k-1"), digest("request"), now)
    state = UserState.of_one("v1", b"\x00" * 16, 7, now)
    written = successor(Absent(), Write(state, key, applied=(("shardId-000000000000", 10**55 + 3),)), b"\x01" * 8,
                        now, Lifetimes(state_ttl=timedelta(days=30)))  # fmt: skip
    item = encode(item_key("ana", "seed_lstm"), written)
    assert item["applied"] == {"M": {"shardId-000000000000": {"S": str(10**55 + 3)}}}
    ours, theirs = parse(item, now), previous_codec(tmp_path).parse(item, now)
    assert type(theirs).__name__ == "Live"
    assert (theirs.state.stream, theirs.state.answering.blob, theirs.revision) == (7, b"\x00" * 16, 1)
    assert [record.key for record in theirs.keys] == [record.key for record in ours.keys] == [key.key]  # type: ignore[union-attr]
    for name in [name for name in sys.modules if name.split(".")[0] == "previous"]:
        del sys.modules[name]
