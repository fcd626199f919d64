"""The verdict cache with a changed label set (real Redis): scores of one label set are never
read for a model with another, even under the same version string."""

from __future__ import annotations

import pytest
import redis

from schemas.labels import GENERATORS
from schemas.settings import Settings
from worker.cache import VerdictCache
from worker.score import Score

pytestmark = pytest.mark.integration

IMG = "cd" * 32
GROWN = (*GENERATORS, "flux/1-dev", "openai/gpt-image-1")


def score(generators: tuple[str, ...], version: str) -> Score:
    probs = {name: 1.0 / len(generators) for name in generators}
    return Score(0.9, probs, 0.9, 0.5, "detector", version)


@pytest.fixture
def cache(settings: Settings, redis_prefix: str, redis_client: redis.Redis) -> VerdictCache:
    redis = settings.redis.model_copy(update={"key_prefix": f"{redis_prefix}:verdict"})
    return VerdictCache(redis, client=redis_client)


def test_a_grown_label_set_misses_the_old_sets_scores(cache: VerdictCache) -> None:
    cache.store([(IMG, score(GENERATORS, "7"))])
    old = cache.lookup([IMG], "7", generators=GENERATORS)
    grown = cache.lookup([IMG], "7", generators=GROWN)
    assert old is not None
    assert grown is not None
    assert old.scores[0] is not None
    assert list(old.scores[0].generator_probs) == list(GENERATORS)
    assert grown.scores == [None]

    cache.store([(IMG, score(GROWN, "7"))])
    again = cache.lookup([IMG], "7", generators=GROWN)
    assert again is not None
    assert again.scores[0] is not None
    assert list(again.scores[0].generator_probs) == list(GROWN)
    # The old set's entry is untouched: a rollback to the old model still finds it.
    back = cache.lookup([IMG], "7", generators=GENERATORS)
    assert back is not None
    assert back.scores[0] is not None
    assert list(back.scores[0].generator_probs) == list(GENERATORS)


def test_the_namespace_version_and_the_label_set_both_select(
    cache: VerdictCache, settings: Settings, redis_prefix: str, redis_client: redis.Redis
) -> None:
    cache.store([(IMG, score(GROWN, "8")), (IMG, score(GENERATORS, "7"))])
    namespace = f"{redis_prefix}:verdict:namespace"
    redis_client.set(namespace, "8")
    # The namespace names version 8; the worker still reads version 7's label set: a miss.
    found = cache.lookup([IMG], "7", generators=GENERATORS)
    assert found is not None
    assert (found.version, found.scores) == ("8", [None])
    found = cache.lookup([IMG], "7", generators=GROWN)
    assert found is not None
    assert found.scores[0] is not None
    assert found.scores[0].model_version == "8"
