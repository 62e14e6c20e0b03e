"""A graph's LiteRT flatbuffer, and a converter failure said in one line naming the op and the layer.

The graph is written as a SavedModel here, once, and converted from it. Given the concrete function instead, the
converter writes that SavedModel itself and traces the model a second time to do so (a trace made outside a save
is not reused inside one): for a window model of W = 128 unrolled timesteps, 8 s of tracing and a slower
conversion, 44 s where this takes 20 s (`make bench` shows the export's time).
"""

from __future__ import annotations

import re
import tempfile

import keras
import tensorflow as tf

from carryover.modes import Graph

# The converter's words for an op LiteRT has no kernel of, and the name scope ("model/layer_1/.../Op") of an op.
MISSING_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
OP_SCOPE = r'fused\["{op}:", "([^"@]+)@'
ERROR = re.compile(r"error: (.+)")
# Words of the converter's internals: tensors and their dtypes, MLIR locations, op dumps and SSA values.
INTERNAL = re.compile(r"Tensor\(|dtype=|loc\(|\btf\.\w+\(|%\w+|<unknown>|0x[0-9a-f]+|\^bb|func\.")
SIGNATURE = "serving_default"  # the flatbuffer's one signature, which the LiteRT engine binds tensors by


class ConversionFailed(RuntimeError):
    """The converter refused the graph; the message is one line."""


def litert_flatbuffer(graph: Graph) -> bytes:
    """What the LiteRT engine runs in this graph's mode, with its tensors named by a signature."""
    try:
        module = graph.litert_module()
        with tempfile.TemporaryDirectory() as saved:
            # without debug info: the converter's errors then locate ops by their name scopes, which name layers
            tf.saved_model.save(module, saved, signatures={SIGNATURE: module.serve})
            converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
            converter.exclude_conversion_metadata = True  # spares unpacking and packing the flatbuffer in Python
            flatbuffer: bytes = converter.convert()
    except Exception as error:  # tracing and the converter raise errors of many kinds
        raise ConversionFailed(summary(error, graph.model)) from None
    return flatbuffer


def summary(error: Exception, model: keras.Model) -> str:
    """One line for a failed conversion: the ops LiteRT lacks and the layers they come from, else the converter's
    (or tracing's) own first error line, without file names or tracebacks."""
    text = str(error)
    missing = sorted(set(MISSING_OP.findall(text)))
    if missing:
        layers = sorted({layer for op in missing for layer in _layers_of(op, text, model)})
        where = f" (in layer {', '.join(map(repr, layers))})" if layers else ""
        return (
            f"LiteRT has no op {', '.join(missing)}{where}: replace that layer by one built from ops LiteRT runs "
            "(https://ai.google.dev/edge/litert/models/ops_compatibility)"
        )
    said = ERROR.search(text)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("File ")]
    reason = said.group(1).strip() if said else (lines[-1] if lines else type(error).__name__)
    if INTERNAL.search(reason) or len(reason) > 160:  # the converter's internals: no help to whoever reads it
        reason = "the converter failed inside TensorFlow's lowering of its ops"
    layers = [layer.name for layer in model.layers if re.search(rf"\b{re.escape(layer.name)}\b", text)]
    where = f" (in layer {', '.join(map(repr, layers[:3]))})" if layers else ""
    return (
        f"LiteRT cannot convert the model{where}: {reason}; replace the layer by one built from ops LiteRT runs, or "
        "export in the other mode (MODE=carry, or MODE=window WINDOW=n)"
    )


def _layers_of(op: str, text: str, model: keras.Model) -> list[str]:
    """The model's layers an op was traced in, from its name scopes (Keras suffixes a scope "_1", "_2", ...)."""
    names = {layer.name for layer in model.layers}
    found = []
    for scope in re.findall(OP_SCOPE.format(op=re.escape(op)), text):
        for part in scope.split("/"):
            name = part if part in names else re.sub(r"_\d+$", "", part)
            if name in names:
                found.append(name)
                break
    return found
