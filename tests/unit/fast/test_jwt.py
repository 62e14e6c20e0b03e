"""AUTH_MODE=JWT: API Gateway checked the token; the handler lets a caller use only their own state."""

from __future__ import annotations

import copy

import pytest

from tests.clients import load_event
from tests.unit.conftest import raw_item

JWT_EVENT = load_event("predict_jwt.json")


def as_user(event: dict, user: str, method: str = "POST", route: str = "predict") -> dict:
    event = copy.deepcopy(event)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/users/{user}/{route}"
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = {"user_id": user}
    return event


def test_token_subject_uses_its_own_state(make_client):
    client = make_client(AUTH_MODE="JWT")
    reply = client.invoke(JWT_EVENT)
    assert reply.status == 200 and reply.body["user_id"] == "alice"
    assert client.invoke(as_user(JWT_EVENT, "alice", "GET", "state")).status == 200


@pytest.mark.parametrize(("method", "route"), [("POST", "predict"), ("GET", "state"), ("DELETE", "state")])
def test_token_subject_cannot_touch_another_users_state(make_client, dynamodb, method, route):
    client = make_client(AUTH_MODE="JWT")
    make_client().predict("bob", [[0.5] * 8])  # bob's state, written without JWT checks
    before = raw_item(dynamodb, "bob")
    reply = client.invoke(as_user(JWT_EVENT, "bob", method, route))
    assert reply.status == 403 and reply.body["error"]["code"] == "forbidden"
    assert raw_item(dynamodb, "bob") == before


def test_request_without_claims_is_403_in_jwt_mode(make_client, dynamodb):
    event = copy.deepcopy(JWT_EVENT)
    del event["requestContext"]["authorizer"]
    reply = make_client(AUTH_MODE="JWT").invoke(event)
    assert reply.status == 403 and raw_item(dynamodb, "alice") is None


def test_iam_mode_does_not_read_claims(make_client):
    event = as_user(JWT_EVENT, "carol")  # alice's token, carol's path: IAM mode leaves identity to IAM
    assert make_client(AUTH_MODE="IAM").invoke(event).status == 200


SUBJECTS = {
    "Auth0": "auth0|64f1c2d3e4b5a6978899aabb",
    "Auth0 social": "google-oauth2|110248495921238986420",
    "Auth0 chained": "oauth2|github|4051234",
    "Cognito": "a1b2c3d4-5678-90ab-cdef-1234567890ab",
    "Okta": "00u1abcd2EFGH3ijk4x7",
    "Entra ID": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    "Google": "110169484474386276334",
    "Apple": "001234.abcdef0123456789abcdef0123456789.1234",
}


@pytest.mark.parametrize("provider", SUBJECTS, ids=list(SUBJECTS))
def test_subjects_the_common_identity_providers_issue_are_user_ids(make_client, provider):
    """With JWT auth the path's user is the token's subject: every provider's subject format must be one."""
    subject = SUBJECTS[provider]
    event = as_user(JWT_EVENT, subject)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = subject
    client = make_client(AUTH_MODE="JWT")
    reply = client.invoke(event)
    assert reply.status == 200 and reply.body["user_id"] == subject
    assert client.invoke(as_user(event, subject, "GET", "state")).body["steps"] == reply.body["steps"]


@pytest.mark.parametrize("user", ["a/b", "a%2Fb", "a b", "a%00b", "ünïcode", "a\\b", "a?b", "a#b", "x" * 129])
def test_user_ids_that_could_reach_another_path_or_key_are_refused(make_client, dynamodb, user):
    reply = make_client().predict(user, [[0.5] * 8])
    assert reply.status in (400, 404) and reply.body["error"]["code"] in ("invalid_request", "not_found")
    assert dynamodb.scan(TableName="carryover-test")["Items"] == []
