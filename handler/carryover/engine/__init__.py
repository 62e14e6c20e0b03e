"""Engines run a model's timesteps with the recurrent state passed in and out explicitly, for one user or for
many users at once (each from their own state, their rows of any length)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class EngineResult:
    outputs: dict[str, np.ndarray]  # output name -> (rows, units): every timestep, or only the last
    state: list[np.ndarray]  # new state tensors, in the manifest's store layout order

    @property
    def finite(self) -> bool:
        """Whether every output and state value is finite (a model fed values too large for it is not)."""
        return all(np.isfinite(values).all() for values in (*self.outputs.values(), *self.state))


class Engine(Protocol):
    name: str

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        """Applies `inputs` (timesteps, features) on top of `state`; never keeps state between calls."""
        ...

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        """`run` for each sequence from its own state, in one pass of the model over all of them: each result is
        what `run` gives for that sequence alone."""
        ...


class Batched(ABC):
    """An engine whose `run` is `run_many` over one sequence."""

    @abstractmethod
    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]: ...

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        return self.run_many([inputs], [state])[0]


def slide(buffer: np.ndarray, inputs: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows that end at each of `inputs`' rows, (T, window, features), and the new buffer: `buffer`
    holds the last `window` rows before them, flat, zeros where none had arrived yet."""
    joined = np.concatenate([buffer.reshape(window, -1), inputs]).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(joined, window, axis=0)[1:].transpose(0, 2, 1)
    return np.ascontiguousarray(windows), joined[-window:].reshape(-1)


def slide_many(
    inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]], window: int
) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """Every sequence's windows in one batch, each sequence's new buffer, and where each one's windows end."""
    slid = [slide(state[0], rows, window) for rows, state in zip(inputs, states, strict=True)]
    ends = np.cumsum([len(windows) for windows, _ in slid]).tolist()
    return np.concatenate([windows for windows, _ in slid]), [buffer for _, buffer in slid], ends


def split_windows(outputs: dict[str, np.ndarray], buffers: list[np.ndarray], ends: list[int]) -> list[EngineResult]:
    """The batch's outputs of `slide_many`'s windows, back to one result per sequence."""
    starts = [0, *ends[:-1]]
    return [
        EngineResult({name: values[start:end] for name, values in outputs.items()}, [buffer])
        for start, end, buffer in zip(starts, ends, buffers, strict=True)
    ]
