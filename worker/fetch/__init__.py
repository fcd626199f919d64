"""Loading images, inline or by URI, under the fetch policy (``settings.fetch``).

- ``policy``: which URIs may be loaded, decided before anything is opened
- ``web``: http(s), pinned to the judged address, redirects judged hop by hop, deadlines
- ``storage``: regular files under the file roots, objects of admitted s3 buckets
- ``reader``: :class:`UriReader`, one URI to bytes, for any process that loads images
- ``batch``: :class:`Fetcher`, the worker's batch of events, concurrently
"""

from worker.fetch.batch import Fetcher
from worker.fetch.errors import REASONS, FetchError
from worker.fetch.policy import FetchPolicy
from worker.fetch.reader import UriReader

__all__ = ["REASONS", "FetchError", "FetchPolicy", "Fetcher", "UriReader"]
