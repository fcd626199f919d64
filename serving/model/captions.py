"""Text features by caption, so a caption seen before skips the text encoder.

Streams repeat captions: boilerplate ("uploaded from my phone"), the same prompt across a set,
and the empty caption of every image that has none. A caption's features depend on nothing else
in its batch (each caption attends only to its own tokens), so they can be computed once and
reused; the cache holds the most recently used ``capacity`` of them, on the model's device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

__all__ = ["TextFeatureCache"]


class TextFeatureCache:
    """Least-recently-used text features, keyed by the caption as the model reads it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a caption cache holds at least one caption")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._features)

    def features(
        self, captions: Sequence[str], encode: Callable[[list[str]], torch.Tensor]
    ) -> torch.Tensor:
        """Features of ``captions`` in order, shape (n, dim); ``encode`` runs once on the
        captions not held (each distinct caption once), in one batch."""
        missing = list(dict.fromkeys(c for c in captions if c not in self._features))
        self.misses += len(missing)
        self.hits += len(captions) - len(missing)
        fresh = dict(zip(missing, encode(missing), strict=True)) if missing else {}
        rows = []
        for caption in captions:
            row = fresh.get(caption)
            if row is None:
                row = self._features[caption]
                self._features.move_to_end(caption)
            rows.append(row)
        for caption, row in fresh.items():
            self._features[caption] = row
        while len(self._features) > self.capacity:
            self._features.popitem(last=False)
        return torch.stack(rows)
