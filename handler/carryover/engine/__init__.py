"""Engines run a model's timesteps with the recurrent state passed in and out explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class EngineResult:
    outputs: dict[str, np.ndarray]  # output name -> (rows, units): every timestep, or only the last
    state: list[np.ndarray]  # new state tensors, in the manifest's store layout order


class Engine(Protocol):
    name: str

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        """Applies `inputs` (timesteps, features) on top of `state`; never keeps state between calls."""
        ...


def slide(buffer: np.ndarray, inputs: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows that end at each of `inputs`' rows, (T, window, features), and the new buffer: `buffer`
    holds the last `window` rows before them, flat, zeros where none had arrived yet."""
    joined = np.concatenate([buffer.reshape(window, -1), inputs]).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(joined, window, axis=0)[1:].transpose(0, 2, 1)
    return np.ascontiguousarray(windows), joined[-window:].reshape(-1)
