"""A Keras model as the engines and the exporter see it: `read` walks and checks its layers, `carry` and
`window` run it in each serving mode with explicit state. Only the TensorFlow engine and the exporter use
this package; the zip deployment (LiteRT) ships without it."""
