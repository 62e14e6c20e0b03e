"""The production engine: the bundle's LiteRT flatbuffer, its tensors bound once by their signature names.

Carry mode: the model's single step, (x, state_0, ...) -> (output_0, ..., state_0, ...), looped over the
timesteps; its batch dimension is free, so one call runs many users' rows side by side. Window mode: the whole
model over a batch of windows, (x) -> (output_0, ...). An interpreter holds its tensors between calls, so each
thread gets its own: requests served in parallel never share buffers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from carryover.engine import Batched, EngineResult, slide_many, split_windows
from carryover.manifest import Manifest
from carryover.native import notices_dropped


@dataclass
class _Bound:
    interpreter: Interpreter
    inputs: dict[str, int]  # signature name -> tensor index
    outputs: dict[str, int]
    batch_free: bool  # the signature takes any number of sequences (bundles of earlier releases take one)
    batch: int = 1  # the sequences its inputs are sized for now


def _bind(flatbuffer: bytes) -> _Bound:
    with notices_dropped():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" (C++, on stderr)
        interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()  # the bundle's one signature; only its names are kept
    details = runner.get_input_details()
    inputs = {name: detail["index"] for name, detail in details.items()}
    outputs = {name: detail["index"] for name, detail in runner.get_output_details().items()}
    free = int(details["x"]["shape_signature"][0]) == -1
    return _Bound(interpreter, inputs, outputs, free)  # the runner goes: it would pin the interpreter's buffers


class _PerThread:
    """The flatbuffer's interpreter of the calling thread, bound on first use."""

    def __init__(self, flatbuffer: bytes) -> None:
        self._flatbuffer = flatbuffer
        self._local = threading.local()

    def get(self) -> _Bound:
        bound: _Bound | None = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = _bind(self._flatbuffer)
        return bound


class LiteRTEngine(Batched):
    """Carry mode: the step runs every sequence of a call at once (a batch of users), each one's state frozen
    once its rows are done, so a sequence's answers are what it gives alone."""

    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._interpreters = _PerThread(flatbuffer)
        self._specs = manifest.outputs
        self._states = [f"state_{i}" for i in range(len(manifest.state_shapes))]
        self._features = manifest.input.features
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def _sized(self, batch: int, units: list[int]) -> _Bound:
        """The thread's interpreter, its inputs resized to `batch` sequences when another number came last."""
        bound = self._interpreters.get()
        interpreter = bound.interpreter
        if bound.batch != batch:
            interpreter.resize_tensor_input(bound.inputs["x"], [batch, self._features])
            for name, size in zip(self._states, units, strict=True):
                interpreter.resize_tensor_input(bound.inputs[name], [batch, size])
            interpreter.allocate_tensors()
            bound.batch = batch
        return bound

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        if len(inputs) > 1 and not self._interpreters.get().batch_free:
            return [self.run(rows, state) for rows, state in zip(inputs, states, strict=True)]
        lengths = [len(rows) for rows in inputs]
        shortest = min(lengths)  # before it, no sequence's rows have ended
        padded = np.zeros((max(lengths), len(inputs), self._features), np.float32)
        for index, rows in enumerate(inputs):
            padded[: len(rows), index] = rows
        current = [np.array([state[k] for state in states], np.float32) for k in range(len(self._states))]
        bound = self._sized(len(inputs), [tensor.shape[1] for tensor in current])
        interpreter, x_id = bound.interpreter, bound.inputs["x"]
        state_in = [bound.inputs[name] for name in self._states]
        state_out = [bound.outputs[name] for name in self._states]
        output_ids = [bound.outputs[f"output_{i}"] for i in range(len(self._specs))]
        steps: list[list[np.ndarray]] = [[] for _ in self._specs]
        ends = np.array(lengths)[:, np.newaxis]
        for t, x in enumerate(padded):
            interpreter.set_tensor(x_id, x)
            for tensor_id, value in zip(state_in, current, strict=True):
                interpreter.set_tensor(tensor_id, value)
            interpreter.invoke()
            for collected, tensor_id in zip(steps, output_ids, strict=True):
                collected.append(interpreter.get_tensor(tensor_id))
            reached = [interpreter.get_tensor(tensor_id) for tensor_id in state_out]
            if t < shortest:
                current = reached
            else:  # sequences whose rows have ended keep the state they reached
                done = t >= ends
                current = [np.where(done, s, new) for s, new in zip(current, reached, strict=True)]
        stacked = [np.array(collected) for collected in steps]  # (steps, batch, units)
        return [
            EngineResult(
                outputs={
                    spec.name: values[:length, index] if spec.per_timestep else values[length - 1, index][np.newaxis]
                    for spec, values in zip(self._specs, stacked, strict=True)
                },
                state=[tensor[index] for tensor in current],
            )
            for index, length in enumerate(lengths)
        ]


class LiteRTWindowEngine(Batched):
    """Window mode: each thread's interpreter is resized when a call brings another number of windows; the
    windows of every sequence of a call run in one batch (a long window's graph, which loops over time, takes one
    window a call)."""

    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._interpreters = _PerThread(flatbuffer)
        self._window = manifest.window or 0
        self._names = [spec.name for spec in manifest.outputs]
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTWindowEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        windows, buffers, ends = slide_many(inputs, states, self._window)
        bound = self._interpreters.get()
        batches = [windows] if bound.batch_free else [windows[i : i + 1] for i in range(len(windows))]
        answers = [self._invoke(bound, batch) for batch in batches]
        outputs = {name: np.concatenate([answer[name] for answer in answers]) for name in self._names}
        return split_windows(outputs, buffers, ends)

    def _invoke(self, bound: _Bound, windows: np.ndarray) -> dict[str, np.ndarray]:
        interpreter, x_id = bound.interpreter, bound.inputs["x"]
        if tuple(interpreter.get_tensor(x_id).shape) != windows.shape:
            interpreter.resize_tensor_input(x_id, list(windows.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(x_id, windows)
        interpreter.invoke()
        return {name: interpreter.get_tensor(bound.outputs[f"output_{i}"]).copy() for i, name in enumerate(self._names)}
