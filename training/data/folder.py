"""Image folders: ``root/<split>/<class>/*`` or ``root/<class>/*``, CIFAKE's REAL/FAKE included.

Class folders map to labels by name (case-insensitive):

* ``real`` or ``human`` is Task A 0, Task B 0 ("real");
* when every class is a CT2 name (``real``, ``sd21``, ``sdxl``, ``sd3``, ``dalle3``,
  ``midjourney6``) the CT2 list and its indices are used;
* otherwise every other folder is a generator, numbered from 1 in sorted order, and the list is
  ``("real", <sorted others>)``: CIFAKE's ``REAL``/``FAKE`` gives ``("real", "fake")`` with FAKE as
  Task A 1, Task B 1;
* ``generators.json`` in the root (a JSON list, "real" first) fixes the list and its order.

Splits come from ``train``/``validation`` (or ``val``, ``dev``)/``test`` folders; a set with no
validation folder gives a stable 10% of train to validation; a set with no split folders is cut
80/10/10 by a hash of each file's path. A folder below a class folder names the item's group
(``REAL/cat/0001.jpg`` is group ``cat``), which held-out evaluation selects on. Images directly in
the root or a split folder are unlabelled. Captions come from an optional ``captions.csv``
(columns ``file``, ``caption``) or ``captions.jsonl`` (``{"file": ..., "caption": ...}``) in the
root, keyed by path relative to the root or by bare file name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from schemas.labels import GENERATORS
from training.data.parquet import read_generators
from training.data.sample import UNLABELLED, DataError, LazySamples, Sample, make_sample
from training.data.splits import VALIDATION_FROM_TRAIN, canonical_split, hash_position, hashed_split

IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
REAL_NAMES: Final[frozenset[str]] = frozenset({"real", "human"})
CAPTION_FILES: Final[tuple[str, ...]] = ("captions.csv", "captions.jsonl")


@dataclass(frozen=True)
class _Item:
    path: Path
    relative: str
    """Path relative to the root, with forward slashes: the key of captions and hashed splits."""
    class_name: str | None
    group: str | None


class ImageFolderSource:
    """An image-folder data set; files are listed at open and read on access."""

    def __init__(self, root: Path, spec: str | None = None) -> None:
        self._root = root
        self._spec = spec or str(root)
        by_split = self._list()
        if not any(by_split.values()):
            raise DataError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found. Expected "
                "root/<split>/<class>/* or root/<class>/*.",
                self._spec,
            )
        classes = sorted(
            {i.class_name for items in by_split.values() for i in items if i.class_name}
        )
        self.generators, self._class_index = self._label_map(classes)
        self._by_split = by_split
        self._captions = self._read_captions()

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        items = self._by_split.get(name, [])
        if require_labels:
            unlabelled = next((item for item in items if item.class_name is None), None)
            if unlabelled is not None:
                raise DataError(
                    f"{unlabelled.relative} is not inside a class folder, so it has no label. "
                    "Put images under <class>/ folders (for example REAL/ and FAKE/).",
                    self._spec,
                )
        return LazySamples(len(items), lambda index: self._sample(items[index]))

    def _list(self) -> dict[str, list[_Item]]:
        children = sorted(child for child in self._root.iterdir() if child.is_dir())
        split_dirs = {split: child for child in children if (split := canonical_split(child.name))}
        by_split: dict[str, list[_Item]] = {"train": [], "validation": [], "test": []}
        if not split_dirs:
            for item in self._items(self._root):
                by_split[hashed_split(item.relative)].append(item)
            return by_split
        for split, directory in split_dirs.items():
            by_split[split].extend(self._items(directory))
        if "validation" not in split_dirs:
            train = by_split["train"]
            moved = [hash_position(i.relative) < VALIDATION_FROM_TRAIN for i in train]
            by_split["validation"] = [item for item, m in zip(train, moved, strict=True) if m]
            by_split["train"] = [item for item, m in zip(train, moved, strict=True) if not m]
        return by_split

    def _items(self, directory: Path) -> list[_Item]:
        items = []
        for path in sorted(directory.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            below = path.relative_to(directory).parts
            class_name = below[0] if len(below) > 1 else None
            group = below[1] if len(below) > 2 else None
            relative = path.relative_to(self._root).as_posix()
            items.append(_Item(path, relative, class_name, group))
        return items

    def _label_map(self, classes: list[str]) -> tuple[tuple[str, ...], dict[str, int]]:
        lowered = {name: "real" if name.lower() in REAL_NAMES else name.lower() for name in classes}
        if (self._root / "generators.json").is_file():
            generators = read_generators(self._root)
        elif set(lowered.values()) <= set(GENERATORS):
            generators = GENERATORS
        else:
            others = sorted({low for low in lowered.values() if low != "real"})
            generators = ("real", *others)
        index = {}
        for name, low in lowered.items():
            if low not in generators:
                raise DataError(
                    f"class folder {name!r} is not in the generator list {list(generators)}; "
                    "add it to generators.json or rename the folder.",
                    self._spec,
                )
            index[name] = generators.index(low)
        return generators, index

    def _read_captions(self) -> dict[str, str]:
        for name in CAPTION_FILES:
            file = self._root / name
            if file.is_file():
                try:
                    return _parse_captions(file)
                except (OSError, ValueError, KeyError) as err:
                    raise DataError(
                        f"cannot read {name}: {err}. Expected columns or keys 'file' and "
                        "'caption'.",
                        self._spec,
                    ) from err
        return {}

    def _sample(self, item: _Item) -> Sample:
        try:
            image = item.path.read_bytes()
        except OSError as err:
            raise DataError(f"cannot read {item.relative}: {err}", self._spec) from err
        caption = self._captions.get(item.relative) or self._captions.get(item.path.name)
        if item.class_name is None:
            return make_sample(image, caption, UNLABELLED, UNLABELLED, item.group)
        label_b = self._class_index[item.class_name]
        return make_sample(image, caption, int(label_b != 0), label_b, item.group)


def _parse_captions(file: Path) -> dict[str, str]:
    """File name (as written in the captions file) -> caption."""
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    captions = {}
    for row in rows:
        key = str(row["file"]).replace("\\", "/")
        captions[key] = str(row["caption"])
    return captions
