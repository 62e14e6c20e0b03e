"""`sam local` on template.yaml as written, through SAM CLI's own code (no Docker): `sam local start-api` mounts
the routes the handler declares, in every AuthMode and without --disable-authorizer, and sends each request where
API Gateway does; `sam local invoke --env-vars` (`make invoke`) reaches the endpoint variables the functions
declare, empty by default."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.provider import Stack
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.apigw.route import Route as LocalRoute

from carryover.config import Settings
from carryover.http.routes import ROUTES
from infra.table import TEMPLATE

ROOT = TEMPLATE.parent
MODES = {  # --parameter-overrides of each AuthMode
    "IAM": {},
    "JWT": {"AuthMode": "JWT", "JwtIssuer": "https://issuer.example.com", "JwtAudience": "client"},
    "NONE": {"AuthMode": "NONE"},
}
ENDPOINTS = {  # the endpoints each function's code reads (carryover.composition, carryover.stream.composition)
    "PredictFunction": {"DYNAMODB_ENDPOINT", "S3_ENDPOINT"},
    "StreamFunction": {"DYNAMODB_ENDPOINT", "S3_ENDPOINT", "KINESIS_ENDPOINT"},
}


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    """A region and stand-in credentials, as `sam local` finds them, with no lookup leaving the machine."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAM_CLI_TELEMETRY": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def stacks(overrides: dict[str, str] | None = None) -> list[Stack]:
    """The stacks `sam local` reads template.yaml into (InvokeContext._get_stacks)."""
    found, _ = SamLocalStackProvider.get_stacks(str(TEMPLATE), parameter_overrides=overrides or {})
    return list(found)


def mounted(overrides: dict[str, str]) -> list[LocalRoute]:
    """The routes `sam local start-api` mounts (LocalApiService), its authorizers not disabled."""
    routes: list[LocalRoute] = ApiProvider(stacks(overrides), cwd=str(ROOT), disable_authorizer=False).api.routes
    return routes


@pytest.mark.parametrize("mode", list(MODES))
def test_sam_local_start_api_mounts_the_routes_the_handler_declares(mode):
    routes = mounted(MODES[mode])
    found = {(method, route.path) for route in routes if route.path != "$default" for method in route.methods}
    assert found == {(route.method, route.path) for route in ROUTES}
    assert [route.path for route in routes].count("$default") == 1  # every other method and path: 405 or 404
    for route in routes:
        assert (route.function_name, route.event_type) == ("PredictFunction", "HttpApi")
        assert route.payload_format_version == "2.0"
        assert route.authorizer_object is None  # IAM and JWT are API Gateway's; SAM runs only Lambda authorizers


class _Runner:
    """Stands in for the Lambda runner: the requests below are routed, never run."""

    def is_debugging(self) -> bool:
        return False


def test_sam_local_start_api_sends_each_request_where_api_gateway_does():
    """Through start-api's own Flask app: each route's method and path reach its route; any other method on those
    paths, or any other path, reaches the default route (the handler answers 405 with Allow, or 404)."""
    from flask import request

    service = LocalApigwService(ApiProvider(stacks(), cwd=str(ROOT)).api, _Runner())

    def routed(**_: Any) -> str:
        route = service._get_current_route(request)
        return json.dumps([route.function_name, "$default" if route.is_default_route else route.path])

    service._request_handler = routed
    service.create()
    client = service._app.test_client()

    def reached(method: str, path: str) -> list[str]:
        answer = client.open(path, method=method)
        assert answer.status_code == 200, (method, path, answer.status_code)
        found: list[str] = json.loads(answer.get_data(as_text=True))
        return found

    for route in ROUTES:
        path = route.path.replace("{user_id}", "alice")
        assert reached(route.method, path) == ["PredictFunction", route.path]
    assert reached("PUT", "/health") == ["PredictFunction", "$default"]
    assert reached("PATCH", "/users/alice/predict") == ["PredictFunction", "$default"]
    assert reached("GET", "/no/such/route") == ["PredictFunction", "$default"]


def declared(function: str) -> dict[str, Any]:
    variables: dict[str, Any] = stacks()[0].resources[function]["Properties"]["Environment"]["Variables"]
    return variables


def bundle_dir(folder: Path) -> Path:
    """A directory Settings takes for a bundle (it checks that a manifest is there)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text("{}")
    return folder


def test_the_functions_declare_the_endpoint_variables_empty_which_means_aws(tmp_path, translated):
    """Declared, so `sam local invoke --env-vars` can set them; empty as deployed, which the code reads as AWS's."""
    assert set().union(*ENDPOINTS.values()) == {
        name.upper() for name in Settings.model_fields if name.endswith("_endpoint")
    }
    for function, names in ENDPOINTS.items():
        variables = declared(function)
        assert {name: variables.get(name) for name in names} == dict.fromkeys(names, ""), function
        deployed = translated["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert {name: deployed.get(name) for name in names} == dict.fromkeys(names, ""), function
        environment = {name: str(value) for name, value in variables.items()}  # as Lambda passes them
        settings = Settings.from_env(environment | {"MODEL_BUNDLE": str(bundle_dir(tmp_path))})
        assert (settings.dynamodb_endpoint, settings.s3_endpoint, settings.kinesis_endpoint) == (None, None, None)


INVOKE_SETTINGS = {"EVENT", "FUNCTION", "TABLE_NAME", "DOCKER_NETWORK", *set().union(*ENDPOINTS.values())}


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """make as a user types it, none of `make invoke`'s settings taken from this process's environment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAKE") and key not in INVOKE_SETTINGS}
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def fake_sam(tmp_path) -> tuple[Path, Path]:
    """A `sam` that writes down its arguments, one a line, and does nothing else."""
    record, sam = tmp_path / "sam-args", tmp_path / "sam"
    sam.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    sam.chmod(0o755)
    return sam, record


def function_environment(function: str, env_vars: dict[str, Any]) -> dict[str, str]:
    """The environment `sam local invoke FUNCTION --env-vars FILE` gives the function's container."""
    provider = SamFunctionProvider(stacks())
    runner = LocalLambdaRunner(None, provider, cwd=str(ROOT), real_path=str(ROOT), env_vars_values=env_vars)
    resolved: dict[str, str] = runner._make_env_vars(provider.get(function)).resolve()
    return resolved


def test_make_invoke_runs_sam_local_invoke_with_the_local_store(tmp_path, fake_sam):
    sam, record = fake_sam
    endpoint = "http://dynamodb:8000"
    result = make(
        "invoke", "EVENT=events/predict.json", f"DYNAMODB_ENDPOINT={endpoint}", "BUILT_TEMPLATE=template.yaml",
        f"SAM={sam}", f"BUILD={tmp_path}", "DOCKER_NETWORK=carryover",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    env_file = tmp_path / "env-vars.json"
    assert record.read_text().splitlines() == [
        "local", "invoke", "PredictFunction", "--template", "template.yaml", "--event", "events/predict.json",
        "--env-vars", str(env_file), "--docker-network", "carryover",
    ]  # fmt: skip
    environment = function_environment("PredictFunction", json.loads(env_file.read_text()))
    assert (environment["DYNAMODB_ENDPOINT"], environment["TABLE_NAME"]) == (endpoint, "carryover-local")
    assert environment["S3_ENDPOINT"] == ""  # not given: AWS's, as deployed
    given = {"NOT_DECLARED": "x", "DYNAMODB_ENDPOINT": endpoint}
    assert "NOT_DECLARED" not in function_environment("PredictFunction", {"Parameters": given})  # why they are declared
    settings = Settings.from_env(environment | {"MODEL_BUNDLE": str(bundle_dir(tmp_path / "bundle"))})
    assert str(settings.dynamodb_endpoint) == endpoint + "/" and settings.table_name == "carryover-local"


def test_make_invoke_says_in_one_line_what_it_needs(tmp_path, fake_sam):
    sam, record = fake_sam
    common = (f"SAM={sam}", f"BUILD={tmp_path}", "BUILT_TEMPLATE=template.yaml")
    for args, needed in (
        (("EVENT=events/predict.json",), "make invoke: give DYNAMODB_ENDPOINT=http://<host>:<port>, a DynamoDB"),
        (("DYNAMODB_ENDPOINT=http://dynamodb:8000",), "make invoke: give EVENT=events/<file>.json"),
        (("EVENT=events/predict.json", "DYNAMODB_ENDPOINT=http://dynamodb:8000", "BUILT_TEMPLATE=nope.yaml"),
         "make invoke: no nope.yaml: run make build first"),
    ):  # fmt: skip
        result = make("invoke", *common, *args)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[0].startswith(needed), result.stderr
    assert not record.exists()  # sam never ran
    assert "make invoke " in make("help").stdout
