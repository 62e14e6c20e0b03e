"""TorchServe handler, shipped in the .mar: the demo LSTM with (h, c) kept per sequence id in the worker's memory.

As TorchServe 0.12.0's examples/stateful/sequence_batching: the sequence id comes from
`context.get_sequence_id(idx)` (header `ts_request_sequence_id`; TorchServe makes one up, `ts-seq-<uuid>`, and
adds `ts_request_sequence_start: true` when the client sends none), and the state lives in an LRU cache of this
handler keyed by it (an OrderedDict, where the example uses `lru-dict`). It is in this worker process only:
gone when the worker or TorchServe restarts, or when the cache evicts it. Runs in the peer venv.

Request body, as carryover's POST /users/<u>/predict: {"inputs": [[f1..f8], ...], "reset": false}
Response: {"sequence_id", "outputs": {"main_output": [[y], ...]}, "steps", "state": "new"|"continued"|"reset"},
and the response header ts_request_sequence_id (so a client that sent none can continue).
Header ts_request_sequence_end: true drops the sequence's state after answering.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any

import torch  # type: ignore[import-not-found]  # in the peer venv only
from ts.torch_handler.base_handler import BaseHandler  # type: ignore[import-not-found]

logger = logging.getLogger(__name__)


class LSTMStatefulHandler(BaseHandler):
    """One request at a time per sequence (sequence batching); each request continues its sequence's state."""

    DEFAULT_CAPACITY = 1000

    def initialize(self, context: Any) -> None:
        """Loads twin.py's SeedLSTM with the state_dict (BaseHandler), then the yaml's `handler:` settings."""
        super().initialize(context)
        self.context = context
        settings = (context.model_yaml_config or {}).get("handler") or {}
        self.capacity = int((settings.get("cache") or {}).get("capacity", self.DEFAULT_CAPACITY))
        threads = settings.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.cache: OrderedDict[str, tuple[Any, Any, int]] = OrderedDict()  # id -> (h, c, steps); LRU first
        self.units = self.model.lstm.hidden_size
        self.features = self.model.lstm.input_size
        self.initialized = True
        logger.info("stateful LSTM: cache capacity %d, torch threads %d", self.capacity, torch.get_num_threads())

    def _state(self, idx: int, sequence_id: str, reset: bool) -> tuple[Any, Any, int, str]:
        """(h, c, steps so far, origin) for this request: zeros for a new, started or reset sequence."""
        start = self.context.get_request_header(idx, self.context.header_key_sequence_start)
        if reset or start or sequence_id not in self.cache:
            zeros = torch.zeros(1, 1, self.units)
            origin = "reset" if reset and sequence_id in self.cache else "new"
            return zeros, zeros.clone(), 0, origin
        self.cache.move_to_end(sequence_id)
        h, c, steps = self.cache[sequence_id]
        return h, c, steps, "continued"

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        """A batch holds at most one request per sequence: each runs on its own, in order."""
        self.context = context
        replies = []
        for idx, row in enumerate(data):
            sequence_id = context.get_sequence_id(idx)
            context.set_response_header(idx, context.header_key_sequence_id, sequence_id)
            body: Any = row.get("data") or row.get("body")
            if isinstance(body, bytes | bytearray):
                body = json.loads(body)
            inputs = torch.as_tensor(body["inputs"], dtype=torch.float32)
            if inputs.ndim != 2 or inputs.shape[1] != self.features:
                raise ValueError(f"inputs must be rows of {self.features} features")
            h, c, steps, origin = self._state(idx, sequence_id, bool(body.get("reset")))
            with torch.inference_mode():
                y, h, c = self.model(inputs.unsqueeze(0), h, c)
            steps += int(inputs.shape[0])
            if context.get_request_header(idx, context.header_key_sequence_end):
                self.cache.pop(sequence_id, None)
            else:
                self.cache[sequence_id] = (h, c, steps)
                self.cache.move_to_end(sequence_id)
                while len(self.cache) > self.capacity:
                    self.cache.popitem(last=False)
            answer = {"sequence_id": sequence_id, "outputs": {"main_output": y[0].tolist()}, "steps": steps}
            replies.append(json.dumps(answer | {"state": origin}))
        return replies
