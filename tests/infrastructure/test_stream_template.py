"""The stream function in the translated template: its event source mapping reports partial failures, bisects,
retries a bounded number of times and has an on-failure queue; its role reaches only what it uses; alarms
watch how far behind it is, its errors and its failure queue."""

from __future__ import annotations

from tests.infrastructure.conftest import resolve

STREAM = {"CreatesStream": True}
EXISTING = {"CreatesStream": False}


def mapping(translated) -> dict:
    """The stream function's event source mapping (the row log's archiver has one too, on the table's stream)."""
    return translated["Resources"]["StreamFunctionRecords"]["Properties"]


def test_event_source_mapping_reports_partial_failures_bisects_and_retries_a_bounded_number_of_times(translated):
    found, parameters = mapping(translated), translated["Parameters"]
    assert found["FunctionName"] == {"Ref": "StreamFunctionAliaslive"}  # the alias a deployment shifts
    assert found["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert found["BisectBatchOnFunctionError"] is True
    assert found["StartingPosition"] == "TRIM_HORIZON"
    assert found["MaximumRetryAttempts"] == {"Ref": "StreamRetries"}
    assert 0 <= parameters["StreamRetries"]["Default"] <= parameters["StreamRetries"]["MaxValue"] == 10000
    age = parameters["StreamMaxRecordAgeSeconds"]
    assert age["MinValue"] > 0  # never -1: records do not wait forever
    assert found["MaximumRecordAgeInSeconds"] == {"Ref": "StreamMaxRecordAgeSeconds"}
    assert found["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}}}
    assert (found["BatchSize"], found["MaximumBatchingWindowInSeconds"], found["ParallelizationFactor"]) == (
        {"Ref": "StreamBatchSize"}, {"Ref": "StreamBatchingWindowSeconds"}, {"Ref": "StreamParallelization"},
    )  # fmt: skip
    assert (parameters["StreamBatchSize"]["MaxValue"], parameters["StreamParallelization"]["MaxValue"]) == (10000, 10)


def test_records_passed_over_for_age_are_still_in_the_stream_to_read_again(translated):
    """The age limit acts before the stream drops a record: the failure queue's description of a batch passed over
    points at records that can still be read."""
    age = translated["Parameters"]["StreamMaxRecordAgeSeconds"]
    retention_s = translated["Resources"]["EventStream"]["Properties"]["RetentionPeriodHours"] * 3600
    least_retention_s = 24 * 3600  # Kinesis keeps records at least 24 hours: a stream given by ARN too
    assert age["Default"] <= retention_s / 2 and age["MaxValue"] < min(retention_s, least_retention_s)


def test_the_stream_is_created_or_given_by_arn(translated):
    source = mapping(translated)["EventSourceArn"]
    assert resolve(source, STREAM) == {"Fn::GetAtt": ["EventStream", "Arn"]}
    assert resolve(source, EXISTING) == {"Ref": "StreamArn"}
    assert translated["Resources"]["EventStream"]["Condition"] == "CreatesStream"
    for name in ("EventStream", "AnswersStream"):
        encryption = translated["Resources"][name]["Properties"]["StreamEncryption"]
        assert encryption == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}


def test_stream_function_role_reaches_only_what_it_uses(translated):
    resources = translated["Resources"]
    function = resources["StreamFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["StreamFunctionRole", "Arn"]}
    role = resources["StreamFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # SAM's Kinesis managed policy would read every stream
    conditions = {"UseTracing": False, **STREAM}
    statements = [resolve(s, conditions) for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    granted = {
        (action, str(resolve(statement["Resource"], conditions)))
        for statement in statements
        if statement is not None
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    stream, table = str({"Fn::GetAtt": ["EventStream", "Arn"]}), str({"Fn::GetAtt": ["StateTable", "Arn"]})
    assert granted == {
        *((f"kinesis:{a}", stream) for a in ("DescribeStream", "DescribeStreamSummary", "GetRecords",
                                             "GetShardIterator", "ListShards")),
        ("kinesis:ListStreams", "*"),
        *((f"dynamodb:{a}", table) for a in ("BatchGetItem", "GetItem", "PutItem")),
        *((f"s3:{a}", str({"Fn::Sub": "${StateBucket.Arn}/states/*"})) for a in ("GetObject", "PutObject")),
        ("sqs:SendMessage", str({"Fn::GetAtt": ["StreamFailureQueue", "Arn"]})),
        ("kinesis:PutRecords", str({"Fn::GetAtt": ["AnswersStream", "Arn"]})),
        ("logs:CreateLogStream", str({"Fn::GetAtt": ["StreamFunctionLogGroup", "Arn"]})),
        ("logs:PutLogEvents", str({"Fn::GetAtt": ["StreamFunctionLogGroup", "Arn"]})),
    }  # fmt: skip
    environment = function["Environment"]["Variables"]
    assert environment["FAILURE_QUEUE_URL"] == {"Ref": "StreamFailureQueue"}
    assert environment["ANSWERS_STREAM"] == {"Ref": "AnswersStream"}
    assert function["Handler"] == "stream_app.lambda_handler"


def test_alarms_watch_how_far_behind_the_stream_function_is_its_errors_and_its_failures(translated):
    alarms = {n: r["Properties"] for n, r in translated["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    age, errors, failures = (alarms[n] for n in ("StreamIteratorAgeAlarm", "StreamFunctionErrorsAlarm",
                                                  "StreamFailuresAlarm"))  # fmt: skip
    assert (age["MetricName"], age["Statistic"], age["Threshold"]) == ("IteratorAge", "Maximum", 300000)
    assert (errors["MetricName"], errors["Threshold"]) == ("Errors", 1)
    for alarm in (age, errors):
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "StreamFunction"}}]
    assert (failures["Namespace"], failures["MetricName"], failures["Threshold"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", 0,
    )  # fmt: skip
