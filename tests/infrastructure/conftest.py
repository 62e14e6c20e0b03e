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
