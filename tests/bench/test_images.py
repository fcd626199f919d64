"""The benchmarks' images: every one a miss of the near-duplicate cache of the others."""

from __future__ import annotations

import io
from itertools import combinations

import pytest
from PIL import Image

from bench.images import distinct_images
from schemas.settings_evidence import EvidenceSettings
from worker.neardup import pdq

pytestmark = pytest.mark.unit


def test_bench_images_are_distinct_in_their_pixels_not_only_their_bytes() -> None:
    images = distinct_images(24)
    settings = EvidenceSettings()
    hashes = [pdq(image, settings.hash_side) for image, _ in images]
    assert all(h is not None for h in hashes)
    closest = min(
        sum(bin(x ^ y).count("1") for x, y in zip(a.hash, b.hash, strict=True))
        for a, b in combinations([h for h in hashes if h], 2)
    )
    assert closest > settings.match_distance
    assert {image[:4] for image, _ in images} == {b"\xff\xd8\xff\xe0", b"\x89PNG"}


def test_bench_images_are_the_smoke_sets_size_and_two_calls_share_none() -> None:
    first, second = distinct_images(4), distinct_images(4)
    assert {Image.open(io.BytesIO(image)).size for image, _ in first} == {(256, 256)}
    assert not {image for image, _ in first} & {image for image, _ in second}
    assert all(caption for _, caption in first)
