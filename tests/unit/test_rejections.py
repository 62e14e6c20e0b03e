"""Every bad request gets a 4xx JSON error that names the problem, and changes no state."""

from __future__ import annotations

import json

import pytest

from carryover.store.codec import item_key
from tests.stores import MODEL
from tests.unit.conftest import MAX_TIMESTEPS, TABLE, raw_item, saved_item

ROW = [0.5] * 8
USER = "alice"


def body(inputs, **extra) -> str:
    return json.dumps({"inputs": inputs, **extra})


BAD_PREDICT_BODIES = [
    # (case, raw body, error code, words the message must contain)
    ("invalid JSON", '{"inputs": [[1, 2', "invalid_json", ["request body"]),
    ("empty body", "", "invalid_json", ["request body", "JSON object"]),
    ("not an object", "[[1, 2]]", "invalid_request", ["request body", "JSON object"]),
    ("missing inputs", '{"reset": true}', "invalid_request", ["inputs", "missing"]),
    ("unknown field", body([ROW], extra_field=1), "invalid_request", ["extra_field", "unknown field"]),
    ("too few features", body([ROW[:7]]), "invalid_request", ["inputs", "row 0", "7 values", "8 features"]),
    ("too many features", body([[*ROW, 1.0]]), "invalid_request", ["inputs", "row 0", "9 values"]),
    ("ragged rows", body([ROW, ROW, ROW[:3]]), "invalid_request", ["inputs", "row 2", "3 values"]),
    ("NaN", '{"inputs": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}', "invalid_request", ["inputs[0][0]", "finite"]),
    ("Infinity", '{"inputs": [[0, 0, Infinity, 0, 0, 0, 0, 0]]}', "invalid_request", ["inputs[0][2]", "finite"]),
    ("overflowing number", '{"inputs": [[0, 0, 0, 1e400, 0, 0, 0, 0]]}', "invalid_request", ["inputs[0][3]", "finite"]),
    ("beyond float32", body([[0, 0, 0, 0, 1e39, 0, 0, 0]]), "invalid_request", ["inputs", "row 0", "float32"]),
    ("string value", body([[0, 0, 0, 0, 0, "1", 0, 0]]), "invalid_request", ["inputs[0][5]", "number"]),
    ("boolean value", body([[0, 0, 0, 0, 0, 0, True, 0]]), "invalid_request", ["inputs[0][6]", "number"]),
    ("null value", body([[0, 0, 0, 0, 0, 0, 0, None]]), "invalid_request", ["inputs[0][7]", "number"]),
    ("row not a list", body([1.0]), "invalid_request", ["inputs[0]", "list"]),
    ("inputs not a list", body("abc"), "invalid_request", ["inputs", "list"]),
    ("empty inputs", body([]), "invalid_request", ["inputs", "at least one timestep"]),
    (
        "too many timesteps",
        body([ROW] * (MAX_TIMESTEPS + 1)),
        "invalid_request",
        ["inputs", f"at most {MAX_TIMESTEPS}"],
    ),
    ("reset not a boolean", body([ROW], reset="yes"), "invalid_request", ["reset", "true or false"]),
]

BAD_USER_IDS = ["x" * 129, "bad$id", "white%20space", "%E2%9C%93", "a,b"]


@pytest.fixture
def client_with_state(make_client):
    client = make_client()
    assert client.predict(USER, [ROW, ROW]).status == 200
    return client


def assert_error(reply, status: int, code: str, words: list[str]) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.body) == {"error"} and set(reply.body["error"]) == {"code", "message"}
    assert reply.body["error"]["code"] == code
    for word in words:
        assert word in reply.body["error"]["message"], (word, reply.body["error"]["message"])


@pytest.mark.parametrize(("case", "raw", "code", "words"), BAD_PREDICT_BODIES, ids=[c[0] for c in BAD_PREDICT_BODIES])
def test_bad_predict_body_is_refused_and_changes_nothing(client_with_state, dynamodb, case, raw, code, words):
    before = raw_item(dynamodb, USER)
    reply = client_with_state.request("POST", f"/users/{USER}/predict", raw)
    assert_error(reply, 400, code, words)
    assert raw_item(dynamodb, USER) == before


@pytest.mark.parametrize("user", BAD_USER_IDS)
@pytest.mark.parametrize(("method", "route"), [("POST", "predict"), ("GET", "state"), ("DELETE", "state")])
def test_bad_user_id_is_refused_and_changes_nothing(client_with_state, dynamodb, user, method, route):
    before = dynamodb.scan(TableName="carryover-test")["Items"]
    reply = client_with_state.request(method, f"/users/{user}/{route}", body([ROW]) if method == "POST" else None)
    assert_error(reply, 400, "invalid_request", ["user_id", "1-128 characters"])
    assert dynamodb.scan(TableName="carryover-test")["Items"] == before


def test_percent_encoded_user_id_is_decoded(client_with_state):
    reply = client_with_state.request("POST", "/users/bob%40example.com/predict", body([ROW]))
    assert reply.status == 200 and reply.body["user_id"] == "bob@example.com"
    assert client_with_state.state("bob@example.com").body["steps"] == 1


def test_longest_allowed_user_id_is_served(client_with_state):
    user = "A-z0.9_:@" * 14 + "xy"
    assert len(user) == 128
    assert client_with_state.predict(user, [ROW]).status == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("POST", "/users/alice"), ("GET", "/users/a/b/c")])
def test_unknown_path_is_404_json(client_with_state, method, path):
    assert_error(client_with_state.request(method, path), 404, "not_found", [method, path])


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("POST", "/model", "GET"), ("PUT", "/users/alice/state", "GET, DELETE"), ("GET", "/users/alice/predict", "POST")],
)
def test_known_path_with_another_method_is_405_with_allow(client_with_state, method, path, allowed):
    reply = client_with_state.request(method, path)
    assert_error(reply, 405, "method_not_allowed", [path, allowed, method])
    assert reply.headers["allow"] == allowed


def test_state_of_unknown_user_is_404(client_with_state):
    assert_error(client_with_state.state("nobody"), 404, "not_found", ["nobody"])


def test_persistent_conflict_is_409_and_the_other_write_stands(make_client, dynamodb):
    """Another writer changes the item between every read and write: after the retries, 409."""
    client = make_client(CONFLICT_RETRIES="2")
    assert client.predict(USER, [ROW]).status == 200
    rival_writes = []

    def rival(params, **_):
        rival_writes.append(1)
        history = bytes(saved_item(dynamodb, USER)["writes"]["B"])  # a writer like ours: its id first, then the history
        dynamodb.update_item(
            TableName=TABLE,
            Key=item_key(USER, MODEL),
            UpdateExpression="SET revision = revision + :one, writes = :w",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":w": {"B": f"rival-{len(rival_writes):02d}".encode() + history[:120]},
            },
        )

    dynamodb.meta.events.register("before-call.dynamodb.PutItem", rival)
    try:
        reply = client.predict(USER, [ROW])
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", rival)
    assert_error(reply, 409, "state_conflict", [USER, "3 attempts"])
    assert len(rival_writes) == 3
    item = saved_item(dynamodb, USER)
    assert bytes(item["writes"]["B"])[:8] == b"rival-03" and item["steps"]["N"] == "1"


def test_unexpected_failure_is_500_without_internals(make_client, served, monkeypatch, dynamodb):
    client = make_client()

    def broken(*_):
        raise RuntimeError("secret detail /opt/model/weights")

    monkeypatch.setattr(served["seed"].bundles["litert"].engine, "run_many", broken)
    reply = client.predict(USER, [ROW])
    assert_error(reply, 500, "internal_error", ["internal error"])
    assert "secret" not in json.dumps(reply.body)
    assert raw_item(dynamodb, USER) is None


def test_inputs_that_make_the_model_overflow_are_422_and_save_nothing(make_client, dynamodb, engine):
    """Values within float32 but far beyond what the model saw overflow a Conv1D with ReLU to inf, and the LSTM
    after it to NaN, with either engine: refused, the saved state untouched."""
    client = make_client("conv_window", engine=engine)
    row = [0.5] * 6
    assert client.predict(USER, [row]).status == 200
    before = raw_item(dynamodb, USER, model="conv-window")
    reply = client.predict(USER, [[3.4e38, -3.4e38] * 3] * 5)
    assert_error(reply, 422, "unprocessable", ["inputs", "non-finite", "nothing was saved"])
    assert raw_item(dynamodb, USER, model="conv-window") == before
    assert client.predict(USER, [row]).body["steps"] == 2


def test_token_model_takes_one_id_per_timestep_either_way(make_client, served):
    client = make_client("tokens")
    flat = client.request("POST", "/users/reader/predict", json.dumps({"inputs": [12, 7, 0, 49]}))
    assert flat.status == 200 and flat.body["steps"] == 4 and len(flat.body["outputs"]["next_item"]) == 4
    rows = client.request("POST", "/users/other/predict", json.dumps({"inputs": [[12], [7], [0], [49]]}))
    assert rows.status == 200 and rows.body["outputs"] == flat.body["outputs"]


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([3, 50], ["timestep 1", "token 50", "0 to 49"]),
        ([3, -1], ["timestep 1", "-1"]),
        ([2.5], ["timestep 0", "2.5"]),
        ([[3, 4]], ["row 0", "2 values", "expected 1 feature"]),
    ],
)
def test_token_outside_the_vocabulary_is_400_naming_it(make_client, dynamodb, inputs, words):
    client = make_client("tokens")
    reply = client.request("POST", "/users/reader/predict", json.dumps({"inputs": inputs}))
    assert_error(reply, 400, "invalid_request", ["inputs", *words])
    assert raw_item(dynamodb, "reader", model="tokens") is None


FRAME = [[[0.5]] * 6] * 6  # one timestep of the frame model: 6 x 6 x 1


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([FRAME, [[[0.5]] * 6] * 5], ["row 1", "shape [6, 6, 1]", "length 5, expected 6"]),
        ([[[0.5] * 6] * 6], ["row 0", "shape [6, 6, 1]", "[0][0] is not an array"]),
        ([[[[0.5]] * 5 + [["x"]]] * 6], ["row 0 at [0][5][0]", "a number"]),
        ([[0.5] * 36], ["row 0", "shape [6, 6, 1]", "length 36, expected 6"]),
    ],
)
def test_a_frame_of_another_shape_is_400_naming_where(make_client, dynamodb, inputs, words):
    client = make_client("frames")
    reply = client.request("POST", "/users/watcher/predict", json.dumps({"inputs": inputs}))
    assert_error(reply, 400, "invalid_request", ["inputs", *words])
    assert raw_item(dynamodb, "watcher", model="frames") is None
    assert client.request("POST", "/users/watcher/predict", json.dumps({"inputs": [FRAME, FRAME]})).status == 200


def test_a_count_of_one_reads_as_one(make_client):
    reply = make_client("tokens").request("POST", "/users/reader/predict", json.dumps({"inputs": [[3, 4]]}))
    assert reply.body["error"]["message"].endswith("row 0 has 2 values, expected 1 feature")
