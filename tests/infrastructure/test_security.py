"""The deployment is locked down: checked on the CloudFormation template SAM translates ours into."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from carryover.http.routes import ROUTES as HANDLER_ROUTES
from infra.table import TEMPLATE
from tests.infrastructure.conftest import resolve, resolve_all

TABLE_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem"}  # what the store calls, and nothing more
ALIAS_INVOCATIONS = {  # the `live` alias CodeDeploy shifts, never $LATEST
    "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
    "${PredictFunctionAliaslive}/invocations"
}


def auth_conditions(mode: str) -> dict[str, bool]:
    return {"UseIam": mode == "IAM", "UseJwt": mode == "JWT", "UseSnapStart": False}


def api_body(translated, mode: str) -> dict[str, Any]:
    """The HTTP API's OpenAPI body as CloudFormation imports it with AuthMode `mode`."""
    body: dict[str, Any] = resolve_all(translated["Resources"]["HttpApi"]["Properties"]["Body"], auth_conditions(mode))
    return body


def operations(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each route of the API by its route key ("POST /users/{user_id}/predict", "$default") and its operation."""
    return {
        "$default" if operation.get("isDefaultRoute") else f"{method.upper()} {path}": operation
        for path, item in body["paths"].items()
        for method, operation in item.items()
    }


def stage(translated) -> dict[str, Any]:
    """The API's one stage, $default, deployed on every change."""
    found = [r["Properties"] for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert len(found) == 1
    assert (found[0]["ApiId"], found[0]["StageName"], found[0]["AutoDeploy"]) == ({"Ref": "HttpApi"}, "$default", True)
    return found[0]


def test_auth_mode_defaults_to_iam(translated):
    assert translated["Parameters"]["AuthMode"]["Default"] == "IAM"
    assert translated["Parameters"]["AuthMode"]["AllowedValues"] == ["IAM", "JWT", "NONE"]


def test_the_api_is_the_handlers_routes_and_the_default_route_all_on_the_alias(translated):
    """Every route the handler declares, and $default (the handler answers 405 or 404 there), each integrated with
    the `live` alias; the API's resources are only those SAM makes of the HttpApi, none written apart."""
    resources = translated["Resources"]
    assert resources["HttpApi"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert sorted(r["Type"] for r in resources.values() if r["Type"].startswith("AWS::ApiGatewayV2::")) == [
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
    ]
    body = api_body(translated, "IAM")
    assert body["info"]["title"] == {"Fn::Sub": "${AWS::StackName}-api"}
    found = operations(body)
    assert set(found) == {f"{route.method} {route.path}" for route in HANDLER_ROUTES} | {"$default"}
    for key, operation in found.items():
        assert operation["x-amazon-apigateway-integration"] == {
            "type": "aws_proxy",
            "httpMethod": "POST",
            "payloadFormatVersion": "2.0",
            "uri": ALIAS_INVOCATIONS,
        }, key
    assert translated["Outputs"]["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }


@pytest.mark.parametrize(
    ("mode", "security", "schemes"),
    [
        ("IAM", [{"AWS_IAM": []}], {"AWS_IAM"}),
        ("JWT", [{"JwtAuthorizer": []}], {"AWS_IAM", "JwtAuthorizer"}),
        ("NONE", None, {"AWS_IAM"}),
    ],
)
def test_every_route_is_authorized_as_the_auth_mode_says(translated, mode, security, schemes):
    body = api_body(translated, mode)
    for key, operation in operations(body).items():
        assert operation.get("security") == security, key
    assert set(body["components"]["securitySchemes"]) == schemes  # the JWT authorizer exists only in JWT mode


def sam_security_schemes() -> dict[str, Any]:
    """What SAM writes for an HttpApi with EnableIamAuthorizer and a JWT authorizer of JwtIssuer for JwtAudience."""
    authorizer = {
        "IdentitySource": "$request.header.Authorization",
        "JwtConfiguration": {"issuer": {"Ref": "JwtIssuer"}, "audience": [{"Ref": "JwtAudience"}]},
    }
    api = {"Auth": {"EnableIamAuthorizer": True, "Authorizers": {"JwtAuthorizer": authorizer}}}
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"JwtIssuer": {"Type": "String"}, "JwtAudience": {"Type": "String"}},
        "Resources": {"Api": {"Type": "AWS::Serverless::HttpApi", "Properties": api}},
    }
    schemes: dict[str, Any] = transform(template, {}, None)["Resources"]["Api"]["Properties"]["Body"]["components"][
        "securitySchemes"
    ]
    return schemes


def test_jwt_authorizer_checks_issuer_and_audience_and_the_handler_checks_the_subject(translated, monkeypatch_module):
    schemes = api_body(translated, "JWT")["components"]["securitySchemes"]
    assert schemes["JwtAuthorizer"]["x-amazon-apigateway-authorizer"] == {
        "type": "jwt",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {"issuer": {"Ref": "JwtIssuer"}, "audience": [{"Ref": "JwtAudience"}]},
    }
    assert schemes == sam_security_schemes()  # written as SAM's Auth would (it takes no condition)
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "JwtNeedsIssuerAndAudience" in translated["Rules"]
    env = translated["Resources"]["PredictFunction"]["Properties"]["Environment"]["Variables"]
    assert env["AUTH_MODE"] == {"Ref": "AuthMode"}


STATE_OBJECTS = {"Fn::Sub": "${StateBucket.Arn}/states/*"}


def test_function_role_reaches_only_its_own_table(translated):
    """Its table's items, and the state objects of its bucket (states too large for an item)."""
    role = translated["Resources"]["PredictFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    granted = {
        (action, str(statement["Resource"]))
        for statement in statements
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert granted == {(action, str({"Fn::GetAtt": ["StateTable", "Arn"]})) for action in TABLE_ACTIONS} | {
        ("s3:GetObject", str(STATE_OBJECTS)), ("s3:PutObject", str(STATE_OBJECTS)),
    }  # fmt: skip
    assert sorted(arn.rsplit("/", 1)[1] for arn in role["ManagedPolicyArns"]) == [
        "AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess",
    ]


def test_table_is_encrypted_recoverable_expiring_and_retained(translated):
    table = translated["Resources"]["StateTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    sse = properties["SSESpecification"]
    assert resolve(sse, {"UseTableKmsKey": False}) == {"SSEEnabled": False}  # an AWS owned key
    assert resolve(sse, {"UseTableKmsKey": True}) == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "TableKmsKeyArn"},
    }
    assert translated["Parameters"]["TableKmsKeyArn"]["Default"] == ""
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"]["Enabled"] is True


def test_stage_is_throttled_by_parameters(translated):
    settings = stage(translated)["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_only_the_api_may_invoke_the_function(translated):
    """Each route's permission is on the `live` alias (the version CodeDeploy shifts traffic to), for this API."""
    resources = translated["Resources"]
    granted = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert len(granted) == len(HANDLER_ROUTES) + 1
    for permission in granted:
        assert permission["FunctionName"] == {"Ref": "PredictFunctionAliaslive"}
        source, values = permission["SourceArn"]["Fn::Sub"]
        assert source.startswith("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/")
        assert values["__ApiId__"] == {"Ref": "HttpApi"}
    alias = resources["PredictFunctionAliaslive"]
    assert alias["Properties"]["Name"] == "live"
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
        "Ref": "PredictFunctionDeploymentGroup"
    }


def test_api_stage_writes_json_access_logs_to_a_log_group_with_retention(translated):
    logs = stage(translated)["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(logs["Format"])
    for field, variable in {
        "requestId": "$context.requestId",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLatency": "$context.responseLatency",
        "integrationError": "$context.integrationErrorMessage",
    }.items():
        assert fields[field] == variable
    group = translated["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_function_logs_to_its_own_log_group_with_retention(translated):
    function = translated["Resources"]["PredictFunction"]["Properties"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    group = translated["Resources"]["FunctionLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert translated["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_reserved_concurrency_caps_the_function_unless_zero(translated):
    function = translated["Resources"]["PredictFunction"]["Properties"]
    concurrency = function["ReservedConcurrentExecutions"]
    assert resolve(concurrency, {"ReservesConcurrency": True}) == {"Ref": "ReservedConcurrency"}
    assert resolve(concurrency, {"ReservesConcurrency": False}) is None
    assert translated["Parameters"]["ReservedConcurrency"]["Default"] == 50


def test_tracing_is_off_unless_asked(translated):
    function = translated["Resources"]["PredictFunction"]["Properties"]
    assert translated["Parameters"]["Tracing"]["Default"] == "Disabled"
    assert resolve(function["TracingConfig"]["Mode"], {"UseTracing": False}) == "PassThrough"
    assert resolve(function["TracingConfig"]["Mode"], {"UseTracing": True}) == "Active"
    tracing = function["Environment"]["Variables"]["TRACING"]
    assert (resolve(tracing, {"UseTracing": False}), resolve(tracing, {"UseTracing": True})) == ("false", "true")


CHECKOV = Path(TEMPLATE.parent / ".venv-checkov" / "bin" / "checkov")


def test_checkov_passes_with_every_skip_explained(template_file):
    """checkov (pinned, offline) on template.yaml: no failed check; every skip inline, with its reason."""
    env = os.environ | {"BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    result = subprocess.run(
        [CHECKOV, "-f", template_file, "--framework", "cloudformation", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0 and result.returncode == 0, [
        c["check_id"] for c in report["results"]["failed_checks"]
    ]
    assert summary["passed"] >= 8
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} >= {"CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173", "CKV_AWS_119"}
    assert all(len(c["check_result"]["suppress_comment"]) > 30 for c in skipped)
