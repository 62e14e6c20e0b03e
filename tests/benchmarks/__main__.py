"""`make bench`'s command: `python -m tests.benchmarks BUNDLE_DIR [options]` (`bench.main`), TensorFlow's
start-up notices left out of its terminal (`carryover/native.py`)."""

from carryover.native import notices_dropped

with notices_dropped():
    from tests.benchmarks import bench

bench.main()
