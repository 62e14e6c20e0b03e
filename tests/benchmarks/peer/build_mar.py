"""Builds the PyTorch twin from export_weights.py's .npy files, checks it against Keras in chunks (max abs diff
<= 1e-5 over outputs, h and c) and archives it for TorchServe (peer venv).

    .venv-peer/bin/python -m tests.benchmarks.peer.build_mar WEIGHTS_DIR MODEL_STORE [--name seed_lstm]

Writes WEIGHTS_DIR/twin.pt (a state_dict) and MODEL_STORE/NAME.mar, which ships twin.py, ts_handler.py and
model-config.yaml from this folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch  # type: ignore[import-not-found]  # in the peer venv only

from tests.benchmarks.peer.twin import SeedLSTM

HERE = Path(__file__).resolve().parent
CHUNKS = (1, 5, 1, 13, 2, 15)  # 37 rows, the Keras reference's length
TOLERANCE = 1e-5
STATE_DICT = {
    "lstm.weight_ih_l0": "lstm_weight_ih",
    "lstm.weight_hh_l0": "lstm_weight_hh",
    "lstm.bias_ih_l0": "lstm_bias_ih",
    "lstm.bias_hh_l0": "lstm_bias_hh",
    "dense.weight": "dense_weight",
    "dense.bias": "dense_bias",
}


def load(weights: Path) -> SeedLSTM:
    """The twin with the exported weights, every parameter given (strict)."""
    model = SeedLSTM()
    state = {key: torch.from_numpy(np.load(weights / f"{name}.npy")) for key, name in STATE_DICT.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def check(model: SeedLSTM, weights: Path) -> float:
    """Max abs diff against Keras over outputs, h and c, the reference fed in chunks; fails above TOLERANCE."""
    x = np.load(weights / "ref_x.npy")
    assert sum(CHUNKS) == len(x), (CHUNKS, len(x))
    h = c = torch.zeros(1, 1, model.lstm.hidden_size)
    ys, at = [], 0
    with torch.inference_mode():
        for n in CHUNKS:
            y, h, c = model(torch.from_numpy(x[at : at + n]).unsqueeze(0), h, c)
            ys.append(y[0].numpy())
            at += n
    diff = max(
        float(np.abs(np.concatenate(ys) - np.load(weights / "ref_y.npy")).max()),
        float(np.abs(h[0, 0].numpy() - np.load(weights / "ref_h.npy")).max()),
        float(np.abs(c[0, 0].numpy() - np.load(weights / "ref_c.npy")).max()),
    )
    print(f"PyTorch twin vs Keras, {len(x)} steps in chunks {CHUNKS}: max abs diff {diff:.2e} (outputs, h, c)")
    if not diff <= TOLERANCE:
        raise SystemExit(f"the PyTorch twin differs from Keras by {diff:.2e} > {TOLERANCE:.0e}: not archived")
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("--name", default="seed_lstm")
    args = parser.parse_args()
    model = load(args.weights)
    check(model, args.weights)
    torch.save(model.state_dict(), args.weights / "twin.pt")
    args.store.mkdir(parents=True, exist_ok=True)
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run(
        [
            str(archiver), "--model-name", args.name, "--version", "1.0",
            "--model-file", str(HERE / "twin.py"), "--serialized-file", str(args.weights / "twin.pt"),
            "--handler", str(HERE / "ts_handler.py"), "--config-file", str(HERE / "model-config.yaml"),
            "--export-path", str(args.store), "--force",
        ],
        check=True,
    )  # fmt: skip
    print(f"archived {args.store / (args.name + '.mar')}")


if __name__ == "__main__":
    main()
