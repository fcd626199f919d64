"""Hard limits on what a message may carry. Larger inputs are rejected, never truncated."""

from __future__ import annotations

from typing import Final

MAX_INLINE_IMAGE_BYTES: Final[int] = 10 * 1024 * 1024
"""Decoded size of an inline image. Bigger images should be published by URI."""

MAX_CAPTION_CHARS: Final[int] = 2_000
"""Captions longer than this are rejected; the model reads at most its own token limit anyway."""

MAX_ID_CHARS: Final[int] = 256
"""Length of event ids, external ids and source names."""

MAX_URI_CHARS: Final[int] = 4_096

MAX_MESSAGE_BYTES: Final[int] = 16 * 1024 * 1024
"""Largest record on every topic but the DLQ.

An ImageEvent may carry a 10 MiB image inline, which is 13.3 MiB of base64 plus its fields;
Kafka's default limit (1 MiB) would reject it at the broker.
"""

MAX_DLQ_MESSAGE_BYTES: Final[int] = 24 * 1024 * 1024
"""Largest record on the DLQ: a dead letter holds the original record again, base64-encoded."""

MAX_JSON_DEPTH: Final[int] = 16
"""Nesting of objects and arrays a message may have; ours need four."""

ALLOWED_URI_SCHEMES: Final[frozenset[str]] = frozenset({"file", "http", "https", "s3"})
"""Schemes an image URI may be written in. Whether one is loaded is the fetch policy's decision
(``settings.fetch``), taken when it is loaded: by default https only."""

MAX_IMAGE_PIXELS: Final[int] = 40_000_000
"""Decoded pixel count above which an image is treated as a decompression bomb."""

MAX_IMAGE_SIDE: Final[int] = 16_384

MAX_IMAGE_ASPECT_RATIO: Final[float] = 20.0
"""Long side over short side. The model resizes the short side to its input size, so a thin strip
(16384x1) would be scaled to a few million pixels long; banners, panoramas and long screenshots stay
below this."""
