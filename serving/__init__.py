"""The detector: model family, pre-processing, checkpoints, predictor, and TorchServe serving.

Import submodules directly. This package's ``__init__`` imports nothing. ``serving.client`` (what
the worker uses), ``serving.imageio`` and ``serving.errors`` never import torch or transformers
(the import contract in pyproject.toml checks it), so they run on CPU-only hosts.
"""
