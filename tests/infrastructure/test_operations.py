"""Operations: alarms on what goes wrong, an optional SNS topic for them, and a dashboard; checked on the
translated template, and tied to the metrics the service emits."""

from __future__ import annotations

import json
import re

import pytest

from carryover.observability import (
    NAMESPACE,
    SERVICE,
    STORE_UNAVAILABLE,
    STREAM_RECORDS_APPLIED,
    STREAM_RECORDS_REFUSED,
    WRITE_CONFLICTS,
)
from tests.infrastructure.conftest import resolve

ALARMS = {
    "FunctionErrorsAlarm", "Api5xxRateAlarm", "DurationNearTimeoutAlarm", "StoreUnavailableAlarm",
    "WriteConflictsAlarm", "TableThrottlesAlarm", "StreamIteratorAgeAlarm", "StreamFunctionErrorsAlarm",
    "StreamFailuresAlarm", "LogArchiveErrorsAlarm", "LogArchiveBehindAlarm", "LogFailuresAlarm",
}  # fmt: skip


def alarms(translated) -> dict:
    return {n: r["Properties"] for n, r in translated["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_the_alarms_exist(translated):
    assert set(alarms(translated)) == ALARMS


@pytest.mark.parametrize("topic", [True, False])
def test_alarms_notify_the_topic_only_when_one_is_given(translated, topic):
    assert translated["Parameters"]["AlarmTopicArn"]["Default"] == ""
    for name, alarm in alarms(translated).items():
        for actions in ("AlarmActions", "OKActions"):
            expected = [{"Ref": "AlarmTopicArn"}] if topic else None
            assert resolve(alarm[actions], {"HasAlarmTopic": topic}) == expected, name


def test_service_alarms_watch_the_metrics_the_service_emits(translated):
    found = alarms(translated)
    for name, metric in (("StoreUnavailableAlarm", STORE_UNAVAILABLE), ("WriteConflictsAlarm", WRITE_CONFLICTS)):
        assert (found[name]["Namespace"], found[name]["MetricName"]) == (NAMESPACE, metric)
        assert found[name]["Dimensions"] == [{"Name": "service", "Value": SERVICE}]


def test_function_alarms(translated):
    found = alarms(translated)
    errors, duration = found["FunctionErrorsAlarm"], found["DurationNearTimeoutAlarm"]
    assert (errors["Namespace"], errors["MetricName"], errors["Threshold"]) == ("AWS/Lambda", "Errors", 1)
    timeout_ms = translated["Resources"]["PredictFunction"]["Properties"]["Timeout"] * 1000
    assert duration["ExtendedStatistic"] == "p99" and duration["Threshold"] == pytest.approx(0.8 * timeout_ms)
    for alarm in (errors, duration):
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "PredictFunction"}}]


def test_5xx_rate_and_throttle_alarms_are_metric_math_on_the_api_and_table(translated):
    found = alarms(translated)
    rate = {m["Id"]: m for m in found["Api5xxRateAlarm"]["Metrics"]}
    assert rate["rate"]["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)" and rate["rate"]["ReturnData"]
    assert [rate[i]["MetricStat"]["Metric"]["MetricName"] for i in ("errors", "requests")] == ["5xx", "Count"]
    assert found["Api5xxRateAlarm"]["Threshold"] == 1
    throttles = {m["Id"]: m for m in found["TableThrottlesAlarm"]["Metrics"]}
    assert {throttles[i]["MetricStat"]["Metric"]["MetricName"] for i in ("reads", "writes")} == {
        "ReadThrottleEvents", "WriteThrottleEvents",
    }  # fmt: skip
    assert all(
        throttles[i]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "TableName", "Value": {"Ref": "StateTable"}}]
        for i in ("reads", "writes")
    )


def test_dashboard_shows_api_function_table_service_and_stream(translated):
    body, variables = translated["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables == {"Function": {"Ref": "PredictFunction"}}
    filled = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(filled)["widgets"]
    metrics = {tuple(m[:2]) for widget in widgets for m in widget["properties"]["metrics"]}
    assert {
        ("AWS/ApiGateway", "5xx"),
        ("AWS/Lambda", "Duration"),
        ("AWS/DynamoDB", "ConsumedWriteCapacityUnits"),
    } <= metrics
    assert {(NAMESPACE, STORE_UNAVAILABLE), (NAMESPACE, WRITE_CONFLICTS)} <= metrics
    assert "${HttpApi}" in body and "${StateTable}" in body and "${Function}" in body
    assert {("AWS/Lambda", "IteratorAge"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible")} <= metrics
    assert {(NAMESPACE, STREAM_RECORDS_APPLIED), (NAMESPACE, STREAM_RECORDS_REFUSED)} <= metrics
    assert "${StreamFunction}" in body and "${StreamFailureQueue.QueueName}" in body


def deployment_groups(translated) -> dict:
    return {
        n: r["Properties"]
        for n, r in translated["Resources"].items()
        if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"
    }


def test_both_ways_in_deploy_together(translated):
    """The stream function's event source mapping invokes its `live` alias, which the same kind of deployment
    shifts as the API's, and both roll back on the same alarms, the stream path's among them."""
    groups = deployment_groups(translated)
    assert set(groups) == {"PredictFunctionDeploymentGroup", "StreamFunctionDeploymentGroup"}
    watched = [{alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]} for group in groups.values()]
    assert watched[0] == watched[1] >= {"FunctionErrorsAlarm", "StreamFunctionErrorsAlarm", "StreamIteratorAgeAlarm"}
    assert len({json.dumps(group["DeploymentConfigName"], sort_keys=True) for group in groups.values()}) == 1
    mapping = translated["Resources"]["StreamFunctionRecords"]
    assert mapping["Properties"]["FunctionName"] == {"Ref": "StreamFunctionAliaslive"}


def window_seconds(deployment_type: str) -> int:
    """How long a CodeDeploy Lambda deployment type shifts traffic: Canary10Percent5Minutes 300 s,
    Linear10PercentEvery1Minute 10 steps of 60 s."""
    canary = re.fullmatch(r"Canary(\d+)Percent(\d+)Minutes?", deployment_type)
    if canary:
        return int(canary.group(2)) * 60
    linear = re.fullmatch(r"Linear(\d+)PercentEvery(\d+)Minutes?", deployment_type)
    assert linear, deployment_type
    return (100 // int(linear.group(1))) * int(linear.group(2)) * 60


def test_every_rollback_alarm_can_fire_within_the_shortest_deployment_window(translated):
    offered = [t for t in translated["Parameters"]["DeploymentType"]["AllowedValues"] if t != "AllAtOnce"]
    shortest = min(window_seconds(t) for t in offered)
    assert shortest == 300
    found = alarms(translated)
    for name in {
        alarm["Name"]["Ref"]
        for g in deployment_groups(translated).values()
        for alarm in g["AlarmConfiguration"]["Alarms"]
    }:
        alarm = found[name]
        periods = (
            [alarm["Period"]]
            if "Period" in alarm
            else [m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m]
        )
        assert max(periods) * alarm["EvaluationPeriods"] <= shortest, name
