"""Where a request starts from, given what the table holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carryover.state_store import StateStore, StoreSettings
from tests.unit.conftest import TABLE, raw_item

ROW = [0.25] * 8


def overwrite(dynamodb, user: str, **attributes) -> None:
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": value for i, value in enumerate(attributes.values())}
    dynamodb.update_item(
        TableName=TABLE,
        Key={"user_id": {"S": user}, "model": {"S": "seed_lstm"}},
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def test_state_of_another_model_version_starts_fresh(make_client, dynamodb):
    client = make_client()
    first = client.predict("u1", [ROW])
    overwrite(dynamodb, "u1", model_version={"S": "0123456789abcdef"})
    reply = client.predict("u1", [ROW])
    assert reply.body["state"] == "reset" and reply.body["steps"] == 1
    assert reply.body["outputs"] == first.body["outputs"]
    assert raw_item(dynamodb, "u1")["model_version"]["S"] == first.body["model"]["version"]


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
    assert int(raw_item(dynamodb, "u3")["expires_at"]["N"]) > past


def test_saved_item_has_the_documented_schema(make_client, dynamodb, served):
    make_client().predict("u4", [ROW] * 3)
    item = raw_item(dynamodb, "u4")
    assert set(item) == {
        "user_id", "model", "model_version", "state", "steps", "revision", "write_id", "updated_at", "expires_at"
    }
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
    StateStore(dynamodb, TABLE, "seed_lstm", StoreSettings(ttl=timedelta(days=1))).load("nobody")
    assert calls and all(call["ConsistentRead"] is True for call in calls)


def test_unknown_attributes_are_ignored(make_client, dynamodb):
    client = make_client()
    client.predict("u5", [ROW])
    overwrite(dynamodb, "u5", legacy_field={"S": "from an older release"}, extra={"N": "7"})
    reply = client.predict("u5", [ROW])
    assert reply.body["state"] == "continued" and reply.body["steps"] == 2


MALFORMED = {
    "state as a string": {"state": {"S": "not bytes"}},
    "state as float64": {"state": {"B": np.zeros(640, np.float64).tobytes()}},
    "steps not a number": {"steps": {"S": "many"}},
    "updated_at garbled": {"updated_at": {"S": "yesterday"}},
    "receipts garbled": {"receipts": {"M": {"k": {"M": {"h": {"S": "x"}, "r": {"B": b"not zlib"}, "t": {"N": "1"}}}}}},
}


@pytest.mark.parametrize("damage", MALFORMED, ids=list(MALFORMED))
def test_malformed_item_resets_by_default(make_client, dynamodb, damage):
    client = make_client()
    first = client.predict("u6", [ROW])
    overwrite(dynamodb, "u6", **MALFORMED[damage])
    reply = client.predict("u6", [ROW])
    assert reply.status == 200 and reply.body["state"] == "reset" and reply.body["steps"] == 1
    assert reply.body["outputs"] == first.body["outputs"]
    assert client.predict("u6", [ROW]).body["state"] == "continued"


def test_item_missing_its_revision_is_still_replaced_only_conditionally(make_client, dynamodb):
    client = make_client()
    client.predict("u7", [ROW])
    dynamodb.update_item(
        TableName=TABLE, Key={"user_id": {"S": "u7"}, "model": {"S": "seed_lstm"}}, UpdateExpression="REMOVE revision, write_id"
    )
    reply = client.predict("u7", [ROW])
    assert reply.status == 200 and reply.body["state"] == "reset"
    assert raw_item(dynamodb, "u7")["revision"]["N"] == "1"


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
