"""Evaluation: metrics plumbing, held-out classes, robustness, files written, the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from aigis.cli import app
from schemas.labels import GENERATORS
from schemas.settings import load_settings
from serving.model.predictor import Predictor, Scores
from training import metrics
from training.data import DataError, Sample, load_split, make_sample
from training.data.parquet import write_ct2, write_generators
from training.data.smoke import generate_split, photographs
from training.degrade import DEGRADATIONS
from training.evaluate import EvalOptions, evaluate_model, run_evaluation, select_holdout
from training.plots import curves_png
from training.thresholds import operating_point


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-item test split in the smoke style: 10 real, 2 of each generator."""
    root = tmp_path_factory.mktemp("smoke-small")
    write_ct2(root / "test.parquet", generate_split(photographs(), 2, 20))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny fused checkpoint."""
    from serving.model.checkpoint import save_checkpoint
    from serving.model.presets import build_preset

    built = build_preset("tiny", "fused", name="tiny-eval", version="7")
    return save_checkpoint(
        built.model,
        built.tokenizer,
        built.image_processor,
        built.config,
        tmp_path_factory.mktemp("ckpt"),
    )


class KnownScores:
    """Gives each image the p_ai encoded in its top-left pixel: the plumbing under test."""

    generators = GENERATORS

    def scores(self, images: Sequence[Image.Image], captions: Sequence[str | None]) -> Scores:
        p_ai = np.array([image.getpixel((0, 0))[0] / 255 for image in images])  # type: ignore[index]
        given = np.zeros((len(images), len(self.generators)))
        given[:, 3] = 1.0  # always sd3 when AI
        return Scores(p_ai, given, np.zeros(len(images)))


def _sample(p_ai_byte: int, label_b: int) -> Sample:
    from training.data.encoding import encode_jpeg

    # A flat image keeps its value through JPEG, so the stub reads back (nearly) this p_ai.
    image = Image.new("RGB", (16, 16), (p_ai_byte, p_ai_byte, p_ai_byte))
    return make_sample(encode_jpeg(image, 100), None, int(label_b > 0), label_b)


@pytest.mark.unit
def test_evaluate_model_scores_what_the_predictor_says() -> None:
    samples = [_sample(20, 0), _sample(230, 0), _sample(240, 3), _sample(30, 5), _sample(250, 5)]
    report = evaluate_model(KnownScores(), samples, EvalOptions(robustness=True))  # type: ignore[arg-type]
    label_a = np.array([0, 0, 1, 1, 1])
    assert report["n"] == 5
    assert report["task_a"]["precision"] == pytest.approx(2 / 3)
    assert report["task_a"]["recall"] == pytest.approx(2 / 3)
    # Predicted B: real, sd3, sd3, real (forced), sd3.
    expected_b = metrics.task_b(np.array([0, 0, 3, 5, 5]), np.array([0, 3, 3, 0, 3]), GENERATORS)
    assert report["task_b"] == expected_b
    assert report["confusion"]["task_a"] == metrics.confusion(label_a, np.array([0, 1, 1, 0, 1]), 2)
    assert list(report["robustness"]) == list(DEGRADATIONS)
    assert "operating_point" not in report
    banded = evaluate_model(KnownScores(), samples, EvalOptions(bands=(0.2, 0.8)))  # type: ignore[arg-type]
    # p_ai about 0.08, 0.9, 0.94, 0.12, 0.98: one of two human images called AI, one AI missed.
    point = banded["operating_point"]
    assert point["false_positive_rate"] == pytest.approx(1 / 2)
    assert point["recall"] == pytest.approx(2 / 3)
    assert point["miss_rate"] == pytest.approx(1 / 3)
    assert point["review_rate"] == 0.0
    assert report["robustness"]["resize_50"]["task_a"] == report["task_a"]  # flat images
    some = EvalOptions(robustness=True, degradations=("webp", "jpeg_q50"))
    assert list(evaluate_model(KnownScores(), samples, some)["robustness"]) == ["webp", "jpeg_q50"]  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown degradation"):
        evaluate_model(KnownScores(), samples, EvalOptions(robustness=True, degradations=("x",)))  # type: ignore[arg-type]


@pytest.mark.unit
def test_other_taxonomies_score_task_a_only() -> None:
    samples = [_sample(20, 0), _sample(240, 1)]
    report = evaluate_model(KnownScores(), samples, EvalOptions(("real", "fake")))  # type: ignore[arg-type]
    assert report["task_b"] is None
    assert report["task_a"]["accuracy"] == 1.0
    assert "task_b" not in report["confusion"]


@pytest.mark.unit
def test_select_holdout_by_generator_or_group() -> None:
    samples = [
        make_sample(b"a", None, 0, 0, group="cat"),
        make_sample(b"b", None, 1, 1, group="dog"),
        make_sample(b"c", None, 1, 2, group="cat"),
    ]
    assert [s.image for s in select_holdout(samples, ("real", "x", "y"), ["CAT"])] == [b"a", b"c"]
    assert [s.image for s in select_holdout(samples, ("real", "x", "y"), ["x"])] == [b"b"]
    with pytest.raises(Exception, match="no item belongs to the held-out classes"):
        select_holdout(samples, ("real", "x", "y"), ["bird"])


@pytest.mark.slow
def test_run_evaluation_writes_metrics_predictions_and_figures(
    smoke_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", max_batch=8)
    report = run_evaluation(
        predictor,
        str(smoke_dir),
        tmp_path,
        batch_size=8,
        progress=False,
        bands=(0.2, 0.8),
        source_bands={"tenant-a": (0.1, 0.9)},
    )

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert written["model"] == {
        "name": "tiny-eval",
        "version": "7",
        "architecture": "fused",
        "generators": list(GENERATORS),
    }
    assert written["n"] == 20
    assert set(written["task_a"]) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "f1_weighted",
        "auroc",
    }
    assert set(written["task_b"]) == {"accuracy", "f1_weighted", "per_class"}
    assert set(written["task_b"]["per_class"]) == set(GENERATORS)
    assert 0.0 <= written["ece"] <= 1.0
    assert list(written["robustness"]) == list(DEGRADATIONS)
    predictions = pq.read_table(tmp_path / "predictions.parquet")
    assert predictions.num_rows == 20
    assert "caption" not in predictions.column_names
    assert predictions.column("sha256").to_pylist() == [
        s.sha256 for s in load_split(str(smoke_dir), "test")
    ]
    p_ai = predictions.column("p_ai").to_pylist()
    labels = predictions.column("label_a").to_pylist()
    assert written["operating_point"] == operating_point(p_ai, labels, 0.2, 0.8).as_dict()
    by_source = written["operating_points_by_source"]
    assert by_source == {"tenant-a": operating_point(p_ai, labels, 0.1, 0.9).as_dict()}
    assert [p["ai_threshold"] for p in written["thresholds"]][-3:] == [0.8, 0.9, 1.0]
    assert len((tmp_path / "thresholds.csv").read_text().splitlines()) == 1 + 5151
    figures = ("confusion_task_a.png", "confusion_task_b.png", "reliability.png")
    for png in (*figures, "roc.png", "precision_recall.png", "det.png"):
        with Image.open(tmp_path / png) as image:
            assert image.format == "PNG"
            assert image.width > 200
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n")
    assert "![det](det.png)" in card
    assert "| source `tenant-a` | 0.10 | 0.90 |" in card


@pytest.mark.unit
def test_curves_need_both_classes_and_mark_the_bands(tmp_path: Path) -> None:
    p_ai, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    marks = {"worker": operating_point(p_ai, labels, 0.2, 0.8)}
    drawn = curves_png(labels, p_ai, tmp_path, marks)
    assert [path.name for path in drawn] == ["roc.png", "precision_recall.png", "det.png"]
    assert curves_png([1, 1], [0.3, 0.9], tmp_path / "one-class") == []
    assert not (tmp_path / "one-class").exists()


@pytest.mark.slow
def test_cli_evaluate_held_out_classes(smoke_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model", str(checkpoint),
            "--data", str(smoke_dir),
            "--output", str(tmp_path),
            "--holdout-classes", "sd3,dalle3",
            "--no-robustness",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "A F1" in result.output
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["n"] == 4
    assert written["task_b"] is None
    assert written["task_a"]["auroc"] is None  # only AI items
    assert written["data"]["holdout_classes"] == ["sd3", "dalle3"]
    assert not (tmp_path / "confusion_task_b.png").exists()


@pytest.mark.unit
def test_cli_evaluate_refuses_an_unknown_degradation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["-m", str(tmp_path), "--data", "smoke", "-o", str(out), "--degradations", "jpeg_q10"]
    result = CliRunner().invoke(app, ["evaluate", *args])
    assert result.exit_code == 2
    assert "jpeg_q10" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_cli_evaluate_reports_a_missing_checkpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(tmp_path / "none"), "--data", "x", "--output", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output


@pytest.mark.slow
def test_cifake_style_data_on_a_ct2_model(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "cifake"
    samples = [_sample(40, 0), _sample(200, 1), _sample(220, 1)]
    write_ct2(data / "test.parquet", samples)
    write_generators(data, ("real", "fake"))
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    report = run_evaluation(
        predictor, str(data), tmp_path / "out", robustness=False, progress=False
    )
    assert report["task_b"] is None
    assert report["data"]["generators"] == ["real", "fake"]


@pytest.mark.slow
def test_a_trained_checkpoints_card_is_rewritten_by_evaluate(
    trained_tiny: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    trained = json.loads((trained_tiny / "training.json").read_text())
    card = (trained_tiny / "README.md").read_text()
    assert f"| Task A F1 | {trained['validation']['f1_a']:.4f} |" in card
    assert "Evaluation: none yet" in card
    model = shutil.copytree(trained_tiny, tmp_path / "model")  # the fixture is shared: read only
    monkeypatch.setenv("AIGIS_WORKER__BANDS_BY_SOURCE", '{"tenant-a": {"ai_threshold": 0.95}}')
    load_settings.cache_clear()  # read the environment afresh, and again after the test
    request.addfinalizer(load_settings.cache_clear)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model", str(model),
            "--data", "smoke",
            "--output", str(tmp_path / "e"),
            "--no-robustness",
            "--limit", "40",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "e" / "metrics.json").read_text())
    card = (model / "README.md").read_text()
    assert "model-index:" in card
    assert f"| Task A F1 | {written['task_a']['f1']:.4f} |" in card
    assert "`smoke`, test split, 40 items, the first 40 items only" in card
    point = written["operating_points_by_source"]["tenant-a"]
    assert f"| source `tenant-a` | 0.20 | 0.95 | {point['false_positive_rate']:.4f} |" in card
    assert "![" not in card  # the figures stay beside the evaluation's own card

    untouched = shutil.copytree(trained_tiny, tmp_path / "kept")
    before = (untouched / "README.md").read_text()
    args = ["evaluate", "-m", str(untouched), "--data", "smoke", "-o", str(tmp_path / "e2")]
    result = CliRunner().invoke(app, [*args, "--no-robustness", "--limit", "8", "--no-card"])
    assert result.exit_code == 0, result.output
    assert (untouched / "README.md").read_text() == before
