"""``python -m bench.precision --serve``: the chosen precision's archive through TorchServe
against the same code path in process, from the same JPEG bytes."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.precision import BATCH, Candidate, Row, load_candidate
from schemas.settings import Settings
from serving.model.predictor import Predictor


def _rate(step: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``step`` over at least ``seconds`` (two calls at least), after one
    warm-up call."""
    step()
    done, started = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - started < seconds:
        step()
        done += 1
    return done / (time.perf_counter() - started)


def serve(settings: Settings, checkpoint: Path, chosen: Row, seconds: float) -> dict[str, Any]:
    """TorchServe against the same code in process, from JPEG bytes, for fp32 and ``chosen``."""
    from bench.serving import PATTERNS, serve_sweep
    from bench.serving_items import distinct_captions, workload
    from serving.imageio import decode_image
    from serving.torchserve.archive import ExportOptions

    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-precision"})
    items = distinct_captions(workload()[0], checkpoint)
    options = [ExportOptions(backend="torch", precision="fp32")]
    if (chosen.backend, chosen.precision) != ("torch", "fp32"):
        options.append(ExportOptions(backend=chosen.backend, precision=chosen.precision))
    store = settings.state_dir / "store"
    shutil.rmtree(store, ignore_errors=True)
    points = serve_sweep(
        settings, "base-random", checkpoint, store, options, items, seconds, (PATTERNS[2],)
    )
    results: dict[str, Any] = {}
    for option, point in zip(options, points, strict=True):
        predictor = load_candidate(checkpoint, Candidate(option.backend, option.precision))
        walk = itertools.count(0, BATCH)

        def pass_from_bytes(predictor: Predictor = predictor, walk: Iterator[int] = walk) -> None:
            """The next BATCH items (captions never cached, as through TorchServe)."""
            start = next(walk)
            chunk = [items[(start + i) % len(items)] for i in range(BATCH)]
            side = predictor.config.preprocess.decode_side
            images = [decode_image(data, target_side=side) for data, _ in chunk]
            predictor.predict(images, [caption for _, caption in chunk])

        in_process = BATCH * _rate(pass_from_bytes, seconds)
        label = f"{option.backend} {option.precision}"
        results[label] = {
            "served_items_per_s": point.items_per_s,
            "in_process_items_per_s": in_process,
            "torchserve_cost": 1 - point.items_per_s / in_process,
            "p50_ms": point.p50_ms,
            "mean_server_batch": point.mean_server_batch,
        }
        print(
            f"  {label:<18} TorchServe {point.items_per_s:6.1f} items/s, in process from JPEG "
            f"{in_process:6.1f} items/s: TorchServe costs {results[label]['torchserve_cost']:.0%}",
            flush=True,
        )
    return results
