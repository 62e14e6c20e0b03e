"""`make bench`'s command: `python -m tests.benchmarks BUNDLE_DIR [options]` (`bench.main`), TensorFlow's
start-up notices and the service's own logs (LOG_LEVEL=DEBUG shows them) left out of its terminal."""

from infra.local.quiet import quiet_unless_debug

quiet_unless_debug()  # before the handler is imported: Powertools reads the level on import

from carryover.native import notices_dropped  # noqa: E402

with notices_dropped():
    from tests.benchmarks import bench

bench.main()
