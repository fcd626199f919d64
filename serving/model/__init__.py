"""The detector family: configuration, architectures (transformers models, registered with
AutoConfig/AutoModel when :mod:`serving.model.detector` is imported), backbones, presets,
checkpoints, pre-processing and the in-process predictor."""
