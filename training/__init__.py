"""Training side of the detector: data readers, augmentation, trainer, evaluation, pseudo-labels.

Import submodules directly. ``training.data`` and the label store's read/write code import
neither torch nor transformers, so they stay usable on CPU-only hosts.
"""
