"""The CloudFormation template SAM translates ours into, as `sam package` would after uploading the code."""

from __future__ import annotations

from typing import Any

import pytest
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

from infra.table import TEMPLATE


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def translated(monkeypatch_module) -> dict[str, Any]:
    template = yaml_parse(TEMPLATE.read_text())
    for name, resource in template["Resources"].items():  # as `sam package` would after uploading the code
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = f"s3://artifacts/{name}.zip"
    return transform(template, {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield patch


def resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """Evaluates Fn::If for the given condition values; AWS::NoValue becomes None."""
    if isinstance(value, dict) and "Fn::If" in value:
        name, when_true, when_false = value["Fn::If"]
        return resolve(when_true if conditions[name] else when_false, conditions)
    if value == {"Ref": "AWS::NoValue"}:
        return None
    return value


def resolve_all(value: Any, conditions: dict[str, bool]) -> Any:
    """`resolve` at every depth, as CloudFormation does inside a property (an OpenAPI body): keys and list items
    whose value is AWS::NoValue are dropped."""
    value = resolve(value, conditions)
    if isinstance(value, dict):
        found = {key: resolve_all(item, conditions) for key, item in value.items()}
        return {key: item for key, item in found.items() if item is not None}
    if isinstance(value, list):
        return [item for item in (resolve_all(item, conditions) for item in value) if item is not None]
    return value


SNAPSTART_DEFAULT = "  SnapStart:\n    Type: String\n    Default: Disabled\n"


@pytest.fixture(params=["Disabled", "Enabled"], ids=["as shipped", "SnapStart on"])
def template_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """template.yaml as shipped, and a copy with SnapStart on by default (the scanners read defaults)."""
    if request.param == "Disabled":
        return TEMPLATE
    text = TEMPLATE.read_text()
    assert SNAPSTART_DEFAULT in text
    copy = tmp_path_factory.mktemp("snapstart") / "template.yaml"
    copy.write_text(text.replace(SNAPSTART_DEFAULT, SNAPSTART_DEFAULT.replace("Disabled", "Enabled")))
    return copy
