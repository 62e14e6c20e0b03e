"""The row log and the bootstrap in the translated template: the table's change stream archived to a private bucket,
retried until the stream drops a record, alarmed; the bootstrap a Distributed Map reading the log's partitions
from S3 in batches, at a bounded concurrency and failure tolerance, each batch run by the worker function on the
same code and layers, its results written to S3; each role reaching only what it uses."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infrastructure.conftest import resolve


def definition(translated) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state machine's definition (its substitution placeholders left in), and the substitutions."""
    properties = translated["Resources"]["BootstrapStateMachine"]["Properties"]
    _, lines = properties["DefinitionString"]["Fn::Join"]
    return json.loads("\n".join(lines)), properties["DefinitionSubstitutions"]


def substituted(value: str, substitutions: dict[str, Any]) -> Any:
    found = re.fullmatch(r"\$\{(definition_substitution_\d+)\}", value)
    return substitutions[found.group(1)] if found else value


def test_the_bootstrap_is_a_distributed_map_over_the_logs_partitions_in_batches(translated):
    found, substitutions = definition(translated)
    settings, users = found["States"]["Settings"], found["States"]["Users"]
    given = {key: substituted(value, substitutions) for key, value in settings["Parameters"].items()}
    assert given["concurrency.$"] == {"Fn::Sub": "States.StringToJson('${BootstrapConcurrency}')"}
    assert given["perWorker.$"] == {"Fn::Sub": "States.StringToJson('${BootstrapPartitionsPerWorker}')"}
    assert given["tolerated.$"] == {"Fn::Sub": "States.StringToJson('${BootstrapToleratedFailurePercent}')"}
    assert users["Type"] == "Map" and users["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert users["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert users["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert users["ItemBatcher"]["MaxItemsPerBatchPath"] == "$.perWorker"
    assert users["ItemBatcher"]["BatchInput"] == {"bucket.$": "$.bucket", "prefix.$": "$.prefix"}
    assert (users["MaxConcurrencyPath"], users["ToleratedFailurePercentagePath"]) == ("$.concurrency", "$.tolerated")
    assert users["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    task = users["ItemProcessor"]["States"]["Bootstrap"]
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert substituted(task["Parameters"]["FunctionName"], substitutions) == {
        "Fn::GetAtt": ["BootstrapFunction", "Arn"]
    }
    assert task["Parameters"]["Payload.$"] == "$" and task["Retry"][0]["MaxAttempts"] == 3
    parameters = translated["Parameters"]
    assert parameters["BootstrapConcurrency"]["MinValue"] >= 1 and parameters["BootstrapToleratedFailurePercent"][
        "MaxValue"] == 100  # fmt: skip


def test_the_worker_runs_the_same_code_and_layers(translated):
    resources = translated["Resources"]
    worker, api = resources["BootstrapFunction"]["Properties"], resources["PredictFunction"]["Properties"]
    assert worker["Code"] != {} and worker["Handler"] == "bootstrap_app.lambda_handler"
    assert worker["Layers"] == api["Layers"] and worker["Runtime"] == api["Runtime"] == "python3.13"
    assert worker["Architectures"] == api["Architectures"] == ["arm64"]


def statements(translated, role: str) -> list[dict[str, Any]]:
    policies = translated["Resources"][role]["Properties"].get("Policies", [])
    conditions = {"LogsRows": True, "UseTracing": False}
    return [resolve(s, conditions) for p in policies for s in p["PolicyDocument"]["Statement"]]


def test_each_role_reaches_only_what_it_uses(translated):
    worker = {(a, json.dumps(s["Resource"])) for s in statements(translated, "BootstrapFunctionRole")
              for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}  # fmt: skip
    table, bucket = json.dumps({"Fn::GetAtt": ["StateTable", "Arn"]}), json.dumps({"Fn::GetAtt": ["LogBucket", "Arn"]})
    assert worker == {
        ("s3:ListBucket", bucket), ("s3:GetObject", json.dumps({"Fn::Sub": "${LogBucket.Arn}/log/*"})),
        ("dynamodb:BatchGetItem", table), ("dynamodb:GetItem", table), ("dynamodb:PutItem", table),
        ("s3:GetObject", json.dumps({"Fn::Sub": "${StateBucket.Arn}/states/*"})),
        ("s3:PutObject", json.dumps({"Fn::Sub": "${StateBucket.Arn}/states/*"})),
    }  # fmt: skip
    machine = statements(translated, "BootstrapStateMachineRole")
    resources = json.dumps(machine)
    assert '"s3:PutObject"' in resources and "bootstrap/results/*" in resources and "log/*" not in resources
    assert "stateMachine:${AWS::StackName}-bootstrap" in resources
    invoke = [s for s in machine if "lambda:InvokeFunction" in s["Action"]]
    assert invoke and all("BootstrapFunction" in json.dumps(s["Resource"]) for s in invoke)
    archive = {a for s in statements(translated, "ArchiveFunctionRole") for a in (
        s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}  # fmt: skip
    assert archive == {"s3:PutObject", "s3:GetObject", "sqs:SendMessage"}


def test_the_change_stream_is_archived_retried_until_it_drops_a_record_and_alarmed(translated):
    resources = translated["Resources"]
    assert resources["StateTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    mapping = resources["ArchiveFunctionChanges"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["StateTable", "StreamArn"]}
    assert (mapping["MaximumRetryAttempts"], mapping["BisectBatchOnFunctionError"]) == (-1, True)
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["LogFailureQueue", "Arn"]}
    for alarm, metric in (("LogArchiveErrorsAlarm", "Errors"), ("LogArchiveBehindAlarm", "IteratorAge")):
        assert resources[alarm]["Properties"]["MetricName"] == metric
    assert resources["CompactFunctionDaily"]["Properties"]["ScheduleExpression"] == "rate(1 day)"


def test_the_buckets_are_private_encrypted_and_tls_only(translated):
    for name in ("LogBucket", "StateBucket"):
        bucket = translated["Resources"][name]["Properties"]
        assert all(bucket["PublicAccessBlockConfiguration"].values())
        rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert rule == {"SSEAlgorithm": "aws:kms"}
        (deny,) = translated["Resources"][f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_state_objects_expire_with_the_states_that_name_them(translated):
    """An item names only objects its own writes made, and expires StateTtlDays after its last write: an object
    that old is named by no live item."""
    (rule,) = translated["Resources"]["StateBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert (rule["Prefix"], rule["ExpirationInDays"], rule["Status"]) == ("states/", {"Ref": "StateTtlDays"}, "Enabled")
