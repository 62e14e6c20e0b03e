"""Where a request starts from, given what the table holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carryover.store.codec import item_key
from carryover.store.dynamodb import DynamoDBStateStore
from carryover.store.item import Lifetimes
from tests.stores import MODEL
from tests.unit.conftest import TABLE, overwrite, raw_item, saved_item

ROW = [0.25] * 8


def test_state_of_another_model_version_starts_fresh(make_client, dynamodb):
    client = make_client()
    first = client.predict("u1", [ROW])
    overwrite(dynamodb, "u1", model_version={"S": "0123456789abcdef"})
    reply = client.predict("u1", [ROW])
    # the version starts from zero where the user's stream stands, and says so: its state has seen 1 row of 2
    assert reply.body["state"] == "reset" and (reply.body["steps"], reply.body["seen"]) == (2, 1)
    assert reply.body["outputs"] == first.body["outputs"]
    assert saved_item(dynamodb, "u1")["model_version"]["S"] == first.body["model"]["version"]


def test_state_blob_of_wrong_size_starts_fresh(make_client, dynamodb):
    client = make_client()
    first = client.predict("u2", [ROW])
    overwrite(dynamodb, "u2", state={"B": b"\x00" * 12})
    reply = client.predict("u2", [ROW])
    assert reply.body["state"] == "reset" and reply.body["outputs"] == first.body["outputs"]


def test_expired_item_not_yet_deleted_counts_as_absent(make_client, dynamodb):
    client = make_client()
    first = client.predict("u3", [ROW, ROW])
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    overwrite(dynamodb, "u3", expires_at={"N": str(past)})
    assert client.state("u3").status == 404
    reply = client.predict("u3", [ROW, ROW])
    assert reply.body["state"] == "new" and reply.body["steps"] == 2
    assert reply.body["outputs"] == first.body["outputs"]
    assert int(saved_item(dynamodb, "u3")["expires_at"]["N"]) > past


def test_saved_item_has_the_documented_schema(make_client, dynamodb, served):
    make_client().predict("u4", [ROW] * 3)
    item = saved_item(dynamodb, "u4")
    assert set(item) == {
        "user_id",
        "model",
        "format",
        "model_version",
        "state",
        "steps",
        "revision",
        "writes",
        "updated_at",
        "expires_at",
        "created",
        "logged",
    }
    assert item["format"]["N"] == "3" and len(item["writes"]["B"]) == 8
    assert (item["steps"]["N"], item["revision"]["N"]) == ("3", "1")
    manifest = served["seed"].manifest
    assert len(item["state"]["B"]) == manifest.state_bytes == 2 * 320 * 4
    state = manifest.unpack_state(bytes(item["state"]["B"]))
    assert all(np.all(np.isfinite(s)) and np.any(s != 0) for s in state)
    updated = datetime.fromisoformat(item["updated_at"]["S"])
    assert int(item["expires_at"]["N"]) - updated.timestamp() == pytest.approx(30 * 86400, abs=1)


def test_store_reads_are_strongly_consistent(dynamodb):
    calls = []
    dynamodb.meta.events.register("provide-client-params.dynamodb.GetItem", lambda params, **_: calls.append(params))
    DynamoDBStateStore(dynamodb, TABLE, "seed_lstm", Lifetimes(state_ttl=timedelta(days=1))).load("nobody")
    assert calls and all(call["ConsistentRead"] is True for call in calls)


def test_unknown_attributes_are_ignored(make_client, dynamodb):
    client = make_client()
    client.predict("u5", [ROW])
    overwrite(dynamodb, "u5", legacy_field={"S": "from an older release"}, extra={"N": "7"})
    reply = client.predict("u5", [ROW])
    assert reply.body["state"] == "continued" and reply.body["steps"] == 2


MALFORMED: dict[str, dict[str, Any]] = {
    "state as a string": {"state": {"S": "not bytes"}},
    "state as float64": {"state": {"B": np.zeros(640, np.float64).tobytes()}},
    "steps not a number": {"steps": {"S": "many"}},
    "updated_at garbled": {"updated_at": {"S": "yesterday"}},
    "keys garbled": {"keys": {"B": b"not a whole record"}},
    "reply garbled": {"reply": {"M": {"k": {"B": b"x"}, "o": {"S": "sideways"}}}},
    "writes garbled": {"writes": {"B": b"12345"}},
    "expires_at 1e17": {"expires_at": {"N": "100000000000000000"}},
    "expires_at 1e19": {"expires_at": {"N": "10000000000000000000"}},
    "expires_at negative": {"expires_at": {"N": "-99999999999999999999"}},
    "steps 1e30": {"steps": {"N": "1000000000000000000000000000000"}},
    "steps negative": {"steps": {"N": "-1"}},
    "revision 1e37": {"revision": {"N": "1" + "0" * 37}},
    "updated_at without zone": {"updated_at": {"S": "2026-01-01T00:00:00"}},
}


@pytest.mark.parametrize("damage", MALFORMED, ids=list(MALFORMED))
def test_malformed_item_resets_by_default(make_client, dynamodb, damage):
    client = make_client()
    first = client.predict("u6", [ROW])
    overwrite(dynamodb, "u6", **MALFORMED[damage])
    readable = client.state("u6").status
    assert readable in (200, 409)  # a blob of the wrong size is readable, just not usable
    reply = client.predict("u6", [ROW])
    stream = 2 if readable == 200 else 1  # the user's stream goes on where the item can still say where it stands
    assert reply.status == 200 and reply.body["state"] == "reset" and (reply.body["steps"], reply.body["seen"]) == (
        stream, 1)  # fmt: skip
    assert reply.body["outputs"] == first.body["outputs"]
    assert client.predict("u6", [ROW]).body["state"] == "continued"


def test_item_missing_its_revision_is_still_replaced_only_conditionally(make_client, dynamodb):
    client = make_client()
    client.predict("u7", [ROW])
    dynamodb.update_item(TableName=TABLE, Key=item_key("u7", MODEL), UpdateExpression="REMOVE revision, writes")
    reply = client.predict("u7", [ROW])
    assert reply.status == 200 and reply.body["state"] == "reset"
    assert saved_item(dynamodb, "u7")["revision"]["N"] == "1"


@pytest.mark.parametrize("damage", ["another version", "malformed"])
def test_reject_policy_refuses_incompatible_state_unless_reset(make_client, dynamodb, damage):
    client = make_client(STATE_ON_INCOMPATIBLE="reject")
    client.predict("u8", [ROW])
    if damage == "another version":
        overwrite(dynamodb, "u8", model_version={"S": "0123456789abcdef"})
    else:
        overwrite(dynamodb, "u8", state={"S": "garbage"})
    before = raw_item(dynamodb, "u8")
    refused = client.predict("u8", [ROW])
    assert refused.status == 409 and refused.body["error"]["code"] == "state_incompatible"
    assert '"reset": true' in refused.body["error"]["message"]
    assert raw_item(dynamodb, "u8") == before
    reply = client.predict("u8", [ROW], reset=True)
    assert reply.status == 200 and reply.body["state"] == "reset" and reply.body["steps"] == 1


def test_state_of_malformed_item_is_409(make_client, dynamodb):
    client = make_client()
    client.predict("u9", [ROW])
    overwrite(dynamodb, "u9", steps={"S": "many"})
    reply = client.state("u9")
    assert reply.status == 409 and reply.body["error"]["code"] == "state_incompatible"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["revision", "steps", "expires_at"]), value=st.integers(-(10**38) + 1, 10**38 - 1))
def test_any_number_in_any_counter_is_never_a_500(make_client, dynamodb, name, value):
    client = make_client()
    client.predict("u10", [ROW])
    overwrite(dynamodb, "u10", **{name: {"N": str(value)}})
    assert client.state("u10").status in (200, 404, 409)
    assert client.predict("u10", [ROW]).status == 200
    assert client.delete("u10").status == 204
