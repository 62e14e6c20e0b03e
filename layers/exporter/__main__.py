"""`make model`'s command: `python -m layers.exporter MODEL BUNDLE [options]` (`export.main`), TensorFlow's
start-up notices left out of its terminal (`carryover/native.py`)."""

from carryover.native import notices_dropped

with notices_dropped():
    from layers.exporter import export

export.main()
