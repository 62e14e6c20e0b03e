"""The event source mapping's delivery of a shard, as the local poller and the tests use it: a function error
bisects the batch, a partial batch response retries from the lowest record reported, failures in a row past the
retries pass the batch over to the on-failure destination."""

from __future__ import annotations

from typing import Any

from infra.local.delivery import ShardDelivery


class Function:
    """Records every batch it is given; fails as `answer` says for each."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.batches = answer, list[list[int]]()

    def __call__(self, batch: list[int]) -> dict[str, Any]:
        self.batches.append(list(batch))
        return self.answer(batch)


def deliver(function: Function, records: list[int], retries: int = 10, batch_size: int = 100) -> list[dict]:
    passed_over: list[dict] = []
    ShardDelivery("shardId-000000000000", function, str, passed_over.append, retries=retries,
                  batch_size=batch_size, records=records).drain()  # fmt: skip
    return passed_over


def test_a_function_error_bisects_the_batch_and_delivers_the_halves_in_order():
    def fails_with_five(batch: list[int]) -> dict[str, Any]:
        if 5 in batch and len(batch) > 1:
            raise RuntimeError("crash")
        return {"batchItemFailures": []}

    function = Function(fails_with_five)
    assert deliver(function, list(range(8))) == []
    assert function.batches == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]


def test_a_partial_batch_response_retries_from_the_lowest_record_reported():
    reported = iter([[3, 6], []])

    def partial(batch: list[int]) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": str(r)} for r in next(reported, [])]}

    function = Function(partial)
    assert deliver(function, list(range(8))) == []
    assert function.batches == [list(range(8)), [3, 4, 5, 6, 7]]


def test_records_that_arrive_before_a_retry_join_it():
    records, calls = [0, 1], []

    def throttled_once(batch: list[int]) -> dict[str, Any]:
        calls.append(batch)
        if len(calls) == 1:
            records.append(2)
            return {"batchItemFailures": [{"itemIdentifier": "0"}]}
        return {"batchItemFailures": []}

    function = Function(throttled_once)
    deliver(function, records)
    assert function.batches == [[0, 1], [0, 1, 2]]


def test_a_batch_failing_past_the_retries_is_passed_over_to_the_on_failure_destination():
    def always(batch: list[int]) -> dict[str, Any]:
        if 1 in batch:
            return {"batchItemFailures": [{"itemIdentifier": "1"}]}
        return {"batchItemFailures": []}

    function = Function(always)
    passed_over = deliver(function, [0, 1, 2, 3], retries=2, batch_size=3)
    assert function.batches == [[0, 1, 2], [1, 2, 3], [1, 2, 3]]  # the failure, then 2 retries
    assert passed_over == [{"condition": "RetryAttemptsExhausted", "shardId": "shardId-000000000000",
                            "startSequenceNumber": "1", "endSequenceNumber": "3", "batchSize": 3}]  # fmt: skip


def test_an_identifier_not_in_the_batch_fails_it_whole():
    answers = iter([{"batchItemFailures": [{"itemIdentifier": ""}]}, {"batchItemFailures": []}])
    function = Function(lambda batch: next(answers))
    assert deliver(function, [0, 1]) == []
    assert function.batches == [[0, 1], [0, 1]]
