"""The carryover demo model in PyTorch, shipped in the .mar: LSTM(8 -> 320) + Linear(320 -> 1) + sigmoid.

The state is passed in and out, as the handler keeps it per sequence. TorchServe's BaseHandler instantiates the
one nn.Module class of this file with no arguments, so the defaults are the demo's shape. Runs in the peer venv.
"""

from __future__ import annotations

from typing import Any

import torch  # type: ignore[import-not-found]  # in the peer venv only
from torch import nn

FEATURES = 8
UNITS = 320


class SeedLSTM(nn.Module):
    """Keras' `Input(None, 8) -> LSTM(320, return_sequences, return_state) -> Dense(1, sigmoid)`."""

    def __init__(self, features: int = FEATURES, units: int = UNITS) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, units, batch_first=True)
        self.dense = nn.Linear(units, 1)

    def forward(self, x: Any, h: Any, c: Any) -> tuple[Any, Any, Any]:
        """x: (1, T, features); h, c: (1, 1, units). Returns y (1, T, 1), h, c."""
        out, (h, c) = self.lstm(x, (h, c))
        return torch.sigmoid(self.dense(out)), h, c
