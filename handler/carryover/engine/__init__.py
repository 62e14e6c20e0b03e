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
