"""How Lambda's event source mapping delivers one Kinesis shard to a function, as AWS documents it with this
template's settings (`BisectBatchOnFunctionError`, `FunctionResponseTypes: [ReportBatchItemFailures]`,
`MaximumRetryAttempts`, an on-failure destination): the local poller delivers with it, and the tests drive the
stream function through it with faults injected.

- A batch is up to `batch_size` records from the checkpoint, read again from the shard as it stands at each
  attempt (records that arrived since join a retry, as they do when the poller reads past a batch).
- The function succeeds (no `batchItemFailures`): the checkpoint moves past the batch.
- It reports failures: the checkpoint moves to the lowest sequence number reported, and the batch is retried
  from there; an empty or unknown identifier fails the whole batch.
- It raises (an error, a timeout, a crash): the batch is split in two and each half retried in turn, the
  first before the second.
- A batch that failed more than `retries` times in a row is passed over: the checkpoint moves past it and its
  description (shard, first and last sequence numbers, size, why) goes to the on-failure destination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass
class ShardDelivery(Generic[R]):
    """Delivers the records of one shard, `records` growing as the shard does, from `checkpoint`; `sequence`
    gives a record's sequence number, `invoke` calls the function with a batch (its answer, or it raises)."""

    shard: str
    invoke: Callable[[list[R]], dict[str, Any] | None]
    sequence: Callable[[R], str]
    on_failure: Callable[[dict[str, Any]], None]
    retries: int = 10
    batch_size: int = 100
    bisect: bool = True
    records: list[R] = field(default_factory=list)
    checkpoint: int = 0  # index in `records` of the first record not done
    attempts: int = 0  # failures in a row of the batch at the checkpoint
    ends: list[int] = field(default_factory=list)  # where the halves of a bisected batch end, innermost last
    log: Callable[[str], None] = lambda _: None

    @property
    def pending(self) -> int:
        return len(self.records) - self.checkpoint

    def batch(self) -> list[R]:
        end = min([self.checkpoint + self.batch_size, *self.ends])
        return self.records[self.checkpoint : end]

    def step(self) -> bool:
        """One invocation with the next batch; False when there was none."""
        batch = self.batch()
        if not batch:
            return False
        try:
            answer = self.invoke(batch)
        except Exception as error:  # a function error: every record of the batch failed
            self.log(f"stream {self.shard}: the function failed ({type(error).__name__})")
            self._failed(batch, split=self.bisect and len(batch) > 1)
            return True
        failures = [item.get("itemIdentifier") for item in (answer or {}).get("batchItemFailures") or []]
        sequences = [self.sequence(record) for record in batch]
        if not failures:
            self._advance(self.checkpoint + len(batch))
        elif all(failure in sequences for failure in failures):
            first = min(sequences.index(failure) for failure in failures)
            self._advance(self.checkpoint + first)
            self._failed(batch[first:], split=False)
        else:
            self._failed(batch, split=False)
        return True

    def drain(self) -> None:
        """Delivers until every record is done or passed over."""
        while self.step():
            pass

    def _advance(self, to: int) -> None:
        if to > self.checkpoint:
            self.attempts = 0
        self.checkpoint = to
        self.ends = [end for end in self.ends if end > to]

    def _failed(self, batch: Sequence[R], split: bool) -> None:
        self.attempts += 1
        if self.attempts > self.retries:
            self.log(f"stream {self.shard}: gave up on {len(batch)} records after {self.retries} retries")
            self.on_failure(
                {
                    "condition": "RetryAttemptsExhausted",
                    "shardId": self.shard,
                    "startSequenceNumber": self.sequence(batch[0]),
                    "endSequenceNumber": self.sequence(batch[-1]),
                    "batchSize": len(batch),
                }
            )
            self._advance(self.checkpoint + len(batch))
        elif split:
            self.ends.append(self.checkpoint + len(batch) // 2)

    def forget_done(self) -> None:
        """Drops the records before the checkpoint (a long-running poller's memory)."""
        done = self.checkpoint
        del self.records[:done]
        self.checkpoint, self.ends = 0, [end - done for end in self.ends]
