"""The peer measurement: TorchServe 0.12.0's stateful inference serving the same demo model as carryover.

TorchServe's sequence batching keeps each sequence's (h, c) in its Python worker's memory (the handler's LRU
cache, keyed by the `ts_request_sequence_id` header): nothing is written anywhere, and a restart loses it.
carryover writes each user's state to a durable store on every request. The bench sends both, over HTTP,
alternating request by request, in one run: 1-row requests continuing one sequence, then 1-row and 10-row requests
continuing 20 users' sequences round-robin (a connection each).

    make bench-peer          # installs .venv-peer from requirements-peer.lock once, then:
    python -m tests.benchmarks.peer BUNDLE_DIR

Files: `torchserve.py` sets TorchServe up, checks and measures (project venv); `export_weights.py` turns the
bundle's Keras weights into PyTorch's layout (project venv); `build_mar.py` checks the PyTorch twin and archives
it (peer venv); `twin.py`, `ts_handler.py` and `model-config.yaml` are what the .mar ships; `log4j2-quiet.xml` is
TorchServe's logging at warn, for `--quiet-torchserve-logs`.
"""
