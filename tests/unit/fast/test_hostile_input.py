"""Arbitrary requests: always a 2xx or a 4xx with the JSON error shape, never a 5xx, and a refusal changes nothing."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carryover.requests import PredictRequest
from tests.unit.conftest import TABLE

ROW = [0.5] * 8
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.builds(
        lambda inputs, extra: json.dumps({"inputs": inputs, **extra}),
        json_values,
        st.dictionaries(st.text(max_size=6), json_values, max_size=2),
    ),
    st.lists(st.lists(st.floats(width=32, allow_nan=False), min_size=8, max_size=8), min_size=1, max_size=4).map(
        lambda rows: json.dumps({"inputs": rows})
    ),
)
user_ids = st.one_of(st.text(max_size=140), st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True), st.just("alice"))
routes = st.sampled_from(["predict", "state", "other", ""])
methods = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE"])
header_maps = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=60), max_size=5)


def table_items(dynamodb) -> list:
    return sorted(dynamodb.scan(TableName=TABLE)["Items"], key=str)


def assert_clean(client, dynamodb, event) -> None:
    client.predict("alice", [ROW])
    before = table_items(dynamodb)
    reply = client.invoke(event)
    assert 200 <= reply.status < 500, reply.body
    if reply.status >= 400:
        assert set(reply.body) == {"error"} and set(reply.body["error"]) == {"code", "message"}
        assert "Traceback" not in reply.body["error"]["message"]
        assert table_items(dynamodb) == before


HYPOTHESIS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(method=methods, user=user_ids, route=routes, body=bodies, headers=header_maps)
def test_any_request_gets_a_clean_answer(make_client, dynamodb, method, user, route, body, headers):
    client = make_client()
    event = client.event(method, f"/users/{user}/{route}".rstrip("/"), body)
    event["headers"] = headers
    assert_clean(client, dynamodb, event)


@HYPOTHESIS
@given(body=bodies, headers=header_maps, base64=st.booleans(), key=st.none() | st.text(max_size=140))
def test_any_prediction_body_gets_a_clean_answer(make_client, dynamodb, body, headers, base64, key):
    client = make_client()
    event = client.event("POST", "/users/alice/predict", body)
    event["headers"] = headers | ({"idempotency-key": key} if key is not None else {})
    event["isBase64Encoded"] = base64
    assert_clean(client, dynamodb, event)


def test_ten_megabyte_body_is_refused_before_parsing(make_client, dynamodb, monkeypatch):
    client = make_client()
    body = json.dumps({"inputs": [ROW] * 250_000})
    assert len(body) > 10_000_000

    def parse(*_, **__):
        raise AssertionError("an oversized body must not be parsed")

    monkeypatch.setattr(PredictRequest, "model_validate_json", parse)
    reply = client.request("POST", "/users/alice/predict", body)
    assert reply.status == 413 and reply.body["error"]["code"] == "payload_too_large"
    assert "1048576" in reply.body["error"]["message"]
    assert table_items(dynamodb) == []


def test_deeply_nested_body_is_400(make_client, dynamodb):
    body = '{"inputs": ' + "[" * 50_000 + "]" * 50_000 + "}"
    reply = make_client().request("POST", "/users/alice/predict", body)
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_json"
    assert table_items(dynamodb) == []
