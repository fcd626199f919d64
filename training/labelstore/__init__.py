"""The label store: one label per image, from pseudo-labels and human review decisions.

Torch-free on purpose (pyarrow and fsspec only): the sink that fills it runs on CPU-only hosts.
Read it with pandas, pyarrow or ``datasets``::

    store = LabelStore("/path/to/labels")            # or "s3://bucket/labels"
    table = store.read()                             # pyarrow.Table, one row per image
    frame = table.to_pandas()                        # pandas
    data = datasets.Dataset(table)                   # Hugging Face datasets
    humans = store.read(origin=Origin.HUMAN)         # human decisions only

Importing this package registers the ``labels://`` reader with ``training.data``, so
``load_split("labels:///path/to/labels?origin=human", "train")`` works.
"""

from training.labelstore import reader as _reader  # noqa: F401 (registers the reader)
from training.labelstore.blobs import blob_path
from training.labelstore.commits import Commit, Snapshot
from training.labelstore.errors import IMAGE_REASONS, ImageError, ImageHashMismatchError, StoreError
from training.labelstore.records import SCHEMA, LabelRecord, Origin
from training.labelstore.store import LabelStore, Vacuumed

__all__ = [
    "IMAGE_REASONS",
    "SCHEMA",
    "Commit",
    "ImageError",
    "ImageHashMismatchError",
    "LabelRecord",
    "LabelStore",
    "Origin",
    "Snapshot",
    "StoreError",
    "Vacuumed",
    "blob_path",
]
