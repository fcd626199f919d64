"""The detector family: configuration, architectures, presets, checkpoints, pre-processing and
the in-process predictor."""
