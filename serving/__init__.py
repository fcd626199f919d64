"""The detector: model family, pre-processing, checkpoints, predictor, and TorchServe serving.

Import submodules directly. This package's ``__init__`` imports nothing, so light modules
(``serving.imageio``, ``serving.config``, ``serving.errors``, ``serving.client``) stay usable on
CPU-only hosts without torch or transformers.
"""
