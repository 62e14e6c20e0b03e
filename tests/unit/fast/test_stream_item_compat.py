"""What this release adds to the item is no new item format: the codec of each earlier release of format 3 (its own
code, committed in `tests/fixtures/releases/`) reads an item this release wrote after stream records, with
answers kept until published, as the same state, steps and keys."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from carryover.core.domain import Covered, KeyRecord, Reply, UserState, digest
from carryover.store.codec import encode, item_key, parse
from carryover.store.dynamodb import utc_now
from carryover.store.item import Absent, Lifetimes, Live, Write, successor

RELEASES = Path(__file__).resolve().parents[2] / "fixtures" / "releases"


def release_codec(commit: str, root: Path) -> ModuleType:
    """That release's store/item.py and store/codec.py, as a package of their own (`r<commit>.store`)."""
    package = f"r{commit}"
    files = json.loads((RELEASES / f"{commit}.json").read_text())["files"]
    directory = root / package / "store"
    directory.mkdir(parents=True)
    for name, source in files.items():
        (directory / f"{name}.py").write_text(source.replace("carryover.store.", f"{package}.store."))
    for folder in (directory.parent, directory):
        (folder / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.find_spec(f"{package}.store.codec")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"{package}.store.codec"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(root))


@pytest.fixture(params=["13db9fa", "ec0291a"])
def earlier(request, tmp_path) -> Iterator[ModuleType]:
    yield release_codec(request.param, tmp_path)
    for name in [name for name in sys.modules if name.split(".")[0] == f"r{request.param}"]:
        del sys.modules[name]


def test_an_earlier_release_reads_an_item_with_stream_positions_and_answers_kept(earlier):
    now = utc_now()
    key = KeyRecord(digest("k-1"), digest("request"), now)
    answer = Reply(digest("stream:a"), "v1", 7, "continued", 2, b"\x00" * 8,
                   covered=Covered("shardId-000000000003", ((10**55 + 1, 1), (10**55 + 3, 1))))  # fmt: skip
    state = UserState(7, UserState.of_one("v1", b"\x00" * 16, 7, now).models, now, answer, outbox=(answer,))
    applied = (("shardId-000000000003", 10**55 + 3),)
    written = successor(Absent(), Write(state, key, applied=applied), b"\x01" * 8, now,
                        Lifetimes(state_ttl=timedelta(days=30)))  # fmt: skip
    item = encode(item_key("ana", "seed_lstm"), written)
    ours, theirs = parse(item, now), earlier.parse(item, now)
    assert isinstance(ours, Live) and ours.state.outbox == (answer,) and ours.state.reply == answer
    assert type(theirs).__name__ == "Live"
    assert (theirs.state.stream, theirs.state.answering.blob, theirs.revision) == (7, b"\x00" * 16, 1)
    assert [record.key for record in theirs.keys] == [record.key for record in ours.keys] == [key.key]
    assert (theirs.state.reply.key, theirs.state.reply.rows) == (answer.key, 2)
