"""``training.data``: CT2 parquet, image folders (CIFAKE), the registry, normalisation."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from schemas.labels import GENERATORS
from training.data import (
    UNLABELLED,
    DataError,
    DataSource,
    LazySamples,
    Reader,
    Sample,
    generators_of,
    load_split,
    make_sample,
    readers,
    register_reader,
)
from training.data.parquet import ParquetSource, image_column, write_ct2
from training.data.splits import hashed_split, split_of_name

pytestmark = pytest.mark.unit


def png(colour: tuple[int, int, int], size: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def ct2_table(rows: int, *, image: str = "bytes", **extra: list[object]) -> pa.Table:
    """A CT2 table whose row i is a (10 * i)-grey image, labelled real for even i, sdxl for odd."""
    images: list[object] = [png((10 * i, 10 * i, 10 * i)) for i in range(rows)]
    if image == "struct":
        images = [{"bytes": data, "path": None} for data in images]
    columns: dict[str, list[object]] = {
        "Caption": [f"caption {i}" for i in range(rows)],
        "Image": images,
        "Label_A": [i % 2 for i in range(rows)],
        "Label_B": [2 * (i % 2) for i in range(rows)],
        **extra,
    }
    return pa.table(columns)


def write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


# --- CT2 parquet ----------------------------------------------------------------------------


def test_parquet_splits_from_hugging_face_file_names(tmp_path: Path) -> None:
    write(tmp_path / "data" / "train-00000-of-00002.parquet", ct2_table(4))
    write(tmp_path / "data" / "train-00001-of-00002.parquet", ct2_table(2))
    write(tmp_path / "data" / "validation-00000-of-00001.parquet", ct2_table(3, image="struct"))
    write(tmp_path / "data" / "test-00000-of-00001.parquet", ct2_table(2))

    train = load_split(str(tmp_path), "train", normalise=False)
    assert [len(load_split(str(tmp_path), s)) for s in ("train", "val", "test")] == [6, 3, 2]
    assert generators_of(str(tmp_path)) == GENERATORS
    first = train[1]
    assert (first.caption, first.label_a, first.label_b) == ("caption 1", 1, 2)
    assert first.image == png((10, 10, 10))
    assert first.group is None


def test_parquet_split_column_and_group_column(tmp_path: Path) -> None:
    table = ct2_table(4, split=["train", "val", "test", "train"], group=["cat", "dog", None, "cat"])
    write(tmp_path / "all.parquet", table)
    train = load_split(str(tmp_path), "train", normalise=False)
    assert [s.caption for s in train] == ["caption 0", "caption 3"]
    assert [s.group for s in train] == ["cat", "cat"]
    assert [s.caption for s in load_split(str(tmp_path), "validation")] == ["caption 1"]


def test_parquet_image_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png((1, 2, 3)))
    table = pa.table({"image": ["images/a.png"], "caption": [""], "label_a": [0], "label_b": [0]})
    write(tmp_path / "test.parquet", table)
    (sample,) = load_split(str(tmp_path), "test", normalise=False)
    assert sample.image == png((1, 2, 3))
    assert sample.caption is None  # an empty caption is no caption


def test_parquet_generators_file_names_other_classes(tmp_path: Path) -> None:
    write(tmp_path / "train.parquet", ct2_table(2))
    (tmp_path / "generators.json").write_text(json.dumps(["real", "gan", "sdxl"]))
    assert generators_of(str(tmp_path)) == ("real", "gan", "sdxl")
    assert len(load_split(str(tmp_path), "train")) == 2


def test_large_parquet_files_are_memory_mapped(tmp_path: Path) -> None:
    path = write(tmp_path / "train.parquet", ct2_table(3))
    mapped = image_column(path, "Image", tmp_path / "cache", in_memory=False)
    assert mapped.to_pylist() == pq.read_table(path).column("Image").to_pylist()
    assert len(list((tmp_path / "cache" / "arrow").glob("*.arrow"))) == 1
    image_column(path, "Image", tmp_path / "cache", in_memory=False)  # reuses the copy
    assert len(list((tmp_path / "cache" / "arrow").iterdir())) == 1


def test_write_ct2_round_trips_through_the_reader(tmp_path: Path) -> None:
    samples = [make_sample(png((i, 0, 0)), f"c{i}", 1, 3, group="g") for i in range(3)]
    assert write_ct2(tmp_path / "test.parquet", samples, row_group_size=2) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["test.parquet"]  # no partial file left
    assert list(load_split(str(tmp_path), "test", normalise=False)) == samples
    metadata = pq.read_schema(tmp_path / "test.parquet").metadata[b"huggingface"]
    assert json.loads(metadata)["info"]["features"]["Image"] == {"_type": "Image"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"Caption": ["x"], "Label_A": [0]}), "no Image column"),
        (ct2_table(2, Label_B=[0, 9]), "Label_B is 9, outside 0..5"),
        (ct2_table(2, Label_A=[0, 3]), "Label_A is 3"),
        (ct2_table(2, Label_B=[0, 0]), "contradicts"),
        (ct2_table(2, Label_A=[0, None]), "is empty"),
        (ct2_table(1, split=["holdout"]), "unknown split values ['holdout']"),
        (pa.table({"Image": [png((0, 0, 0))], "Caption": ["x"]}), "no Label_A / Label_B"),
    ],
)
def test_parquet_errors_name_the_problem(tmp_path: Path, table: pa.Table, message: str) -> None:
    write(tmp_path / "train.parquet", table)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_split(str(tmp_path), "train")


def test_parquet_without_split_information_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "images.parquet", ct2_table(1))
    with pytest.raises(DataError, match=r"cannot tell which split images\.parquet belongs to"):
        load_split(str(tmp_path), "train")


def test_missing_image_file_and_empty_split_are_errors(tmp_path: Path) -> None:
    table = pa.table({"Image": ["gone.png"], "Caption": ["x"], "Label_A": [0], "Label_B": [0]})
    write(tmp_path / "train.parquet", table)
    with pytest.raises(DataError, match=r"gone.png cannot be read"):
        load_split(str(tmp_path), "train")[0]
    with pytest.raises(DataError, match="split 'test' is empty"):
        load_split(str(tmp_path), "test")


def test_unlabelled_parquet_reads_when_labels_are_not_required(tmp_path: Path) -> None:
    write(tmp_path / "test.parquet", pa.table({"Image": [png((5, 5, 5))], "Caption": ["x"]}))
    (sample,) = load_split(str(tmp_path), "test", require_labels=False)
    assert (sample.label_a, sample.label_b) == (UNLABELLED, UNLABELLED)


# --- image folders --------------------------------------------------------------------------


def image_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_cifake_layout_maps_real_and_fake(tmp_path: Path) -> None:
    files = {
        f"{split}/{cls}/{i}.jpg": png((i, 9, 9))
        for split in ("train", "test")
        for cls in ("REAL", "FAKE")
        for i in range(20)
    }
    root = str(image_folder(tmp_path, files))
    assert generators_of(root) == ("real", "fake")
    test = load_split(root, "test", normalise=False)
    assert Counter((s.label_a, s.label_b) for s in test) == {(0, 0): 20, (1, 1): 20}
    # No validation folder: a stable tenth of train becomes validation, disjoint from train.
    train = {s.sha256 + str(s.label_b) for s in load_split(root, "train", normalise=False)}
    validation = {s.sha256 + str(s.label_b) for s in load_split(root, "val", normalise=False)}
    assert validation
    assert not train & validation
    assert len(train) + len(validation) == 40


def test_flat_folder_is_split_by_path_hash_with_captions_and_groups(tmp_path: Path) -> None:
    files = {f"human/cat/{i}.png": png((i, 0, 0)) for i in range(30)}
    files |= {f"sd3/{i}.png": png((0, i, 0)) for i in range(30)}
    root = image_folder(tmp_path, files)
    (root / "captions.jsonl").write_text(
        "\n".join(json.dumps({"file": f"sd3/{i}.png", "caption": f"c{i}"}) for i in range(30))
    )
    splits = {s: load_split(str(root), s, normalise=False) for s in ("train", "validation", "test")}
    assert sum(len(items) for items in splits.values()) == 60
    # CT2 names keep the CT2 list, "human" is class 0.
    assert generators_of(str(root)) == GENERATORS
    for split, items in splits.items():
        for sample in items:
            if sample.label_b == GENERATORS.index("sd3"):
                index = int(sample.caption.removeprefix("c")) if sample.caption else -1
                assert hashed_split(f"sd3/{index}.png") == split
            else:
                assert (sample.label_a, sample.group, sample.caption) == (0, "cat", None)


def test_captions_csv_by_bare_file_name(tmp_path: Path) -> None:
    root = image_folder(tmp_path, {"test/REAL/a.png": png((1, 1, 1))})
    (root / "captions.csv").write_text('file,caption\na.png,"a dog, running"\n')
    (sample,) = load_split(str(root), "test")
    assert sample.caption == "a dog, running"


def test_folder_errors(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "a", {"test/REAL/a.png": png((1, 1, 1)), "test/b.png": b"x"})
    with pytest.raises(DataError, match="not inside a class folder"):
        load_split(str(root), "test")
    assert [s.label_a for s in load_split(str(root), "test", normalise=False, require_labels=False)]
    (root / "generators.json").write_text('["real", "gan"]')
    image_folder(root, {"test/VAE/c.png": png((2, 2, 2))})
    with pytest.raises(DataError, match="class folder 'VAE' is not in the generator list"):
        load_split(str(root), "test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_split(str(tmp_path / "empty"), "train")


# --- registry and normalisation -------------------------------------------------------------


class _Fixed:
    generators = ("real", "x")

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        items = [make_sample(png((1, 1, 1)), name, 1, 1)]
        return LazySamples(1, items.__getitem__)


def test_a_registered_reader_claims_its_specs_first() -> None:
    source: DataSource = _Fixed()
    register_reader(Reader("fixed", lambda s: s.startswith("fixed://"), lambda s: source, "fixed"))
    try:
        assert readers()[0].name == "fixed"
        assert generators_of("fixed://anything") == ("real", "x")
        (sample,) = load_split("fixed://anything", "dev")
        assert sample.caption == "validation"
    finally:
        register_reader(Reader("fixed", lambda s: False, lambda s: source, "fixed"))


def test_unknown_specs_and_splits_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no reader understands this data set spec"):
        load_split(str(tmp_path / "missing"), "train")
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        load_split("smoke", "holdout")


def test_normalisation_gives_every_image_one_jpeg_encoding(tmp_path: Path) -> None:
    write(tmp_path / "train.parquet", ct2_table(3))
    raw = load_split(str(tmp_path), "train", normalise=False)
    normal = load_split(str(tmp_path), "train")
    assert all(Image.open(io.BytesIO(s.image)).format == "JPEG" for s in normal)
    assert [s.label_b for s in raw] == [s.label_b for s in normal]
    assert normal[0].sha256 != raw[0].sha256
    assert normal[0] == load_split(str(tmp_path), "train")[0]  # deterministic


def test_an_undecodable_image_names_its_item(tmp_path: Path) -> None:
    table = pa.table({"Image": [b"not an image"], "Label_A": [0], "Label_B": [0]})
    write(tmp_path / "train.parquet", table)
    (raw,) = ParquetSource(tmp_path).split("train", require_labels=True)
    with pytest.raises(DataError, match=f"undecodable_image.*item sha256 {raw.sha256}"):
        load_split(str(tmp_path), "train")[0]


def test_lazy_samples_index_and_slice() -> None:
    items = [make_sample(png((i, i, i)), None, 0, 0) for i in range(5)]
    lazy = LazySamples(5, items.__getitem__)
    assert lazy[-1] == items[4]
    assert list(lazy[1:4:2]) == [items[1], items[3]]
    with pytest.raises(IndexError):
        lazy[5]


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("train-00000-of-00004.parquet", "train"),
        ("val.parquet", "validation"),
        ("validation_b.parquet", "validation"),
        ("test", "test"),
        ("trainer.parquet", None),
        ("data.parquet", None),
    ],
)
def test_split_of_name(name: str, split: str | None) -> None:
    assert split_of_name(name) == split


def test_readers_import_neither_torch_nor_transformers() -> None:
    # The label store's sink runs on CPU-only hosts and reads and writes through these modules.
    code = (
        "import sys, training.data, training.data.smoke, training.augment, training.metrics; "
        "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
