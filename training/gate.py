"""The promotion gate: does a candidate beat the champion on the same gold hold-out?

Promote only when the chosen metric improves by at least ``min_improvement`` and no guarded
metric (the headline metric of each task) drops by more than ``max_regression``. Metrics are
higher-is-better (F1, accuracy, AUROC) except those in ``LOWER_IS_BETTER`` (calibration error),
whose improvement is a fall; a metric a model could not be scored on (None, e.g. Task B of a
hold-out with classes the model lacks) is left out of the comparison. Pure functions.

A candidate that adds generators to the label set is compared on the old classes, on the old
hold-out, like any other; each new class is reported beside that comparison
(:func:`with_new_classes`, from the candidate's scores on the new class's own held-out examples).
The champion cannot be scored on a class it does not have, so a new class only vetoes: below
``min_recall`` of its held-out examples named, the candidate is not promoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

GUARDED: Final[tuple[str, ...]] = ("task_a.f1", "task_b.f1_weighted")
"""Headline metric of each task; none may regress by more than the tolerance."""

LOWER_IS_BETTER: Final[frozenset[str]] = frozenset({"ece"})

SERVING_FPR: Final[str] = "operating_point.false_positive_rate"
"""The false-positive rate at the serving bands, when the evaluation reported it."""
"""Metrics where a smaller value is the better model."""


class GateDecision(BaseModel):
    """The gate's verdict, with everything needed to explain it."""

    model_config = ConfigDict(frozen=True)

    promote: bool
    metric: str
    candidate: float | None
    champion: float | None
    min_improvement: float
    max_regression: float
    regressions: dict[str, float]
    """Guarded metrics that dropped by more than the tolerance, with the drop."""
    reasons: list[str]
    new_classes: dict[str, dict[str, float]] = {}
    """Per generator added by the candidate: its scores on that class's held-out examples
    (``examples``, ``recall_b``: named as that generator, ``recall_a``: called AI). Reported,
    not gated."""

    def summary(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        return f"{verdict}: " + "; ".join(self.reasons)


def flatten_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"task_a": {"f1": 0.9}}`` -> ``{"task_a.f1": 0.9}``; numbers only, None dropped.

    Lists (per-bin reliability, confusion matrices) and per-class breakdowns are not compared.
    """
    flat: dict[str, float] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if key not in ("per_class", "confusion", "timing"):
                flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    *,
    metric: str,
    min_improvement: float,
    max_regression: float,
    guarded: tuple[str, ...] = GUARDED,
    max_fpr_increase: float | None = None,
) -> GateDecision:
    """Compare flattened metrics of the candidate and the champion (see the module docstring).
    With ``max_fpr_increase``, a candidate whose false-positive rate at the serving bands
    (:data:`SERVING_FPR`) rises by more than that is refused too."""
    reasons: list[str] = []
    new, old = candidate.get(metric), champion.get(metric)
    improved = False
    if new is None or old is None:
        reasons.append(
            f"{metric} could not be computed for both models on the hold-out "
            f"(candidate {new}, champion {old}); choose another retrain.metric"
        )
    else:
        delta = old - new if metric in LOWER_IS_BETTER else new - old
        improved = delta >= min_improvement
        reasons.append(
            f"{metric} {old:.4f} -> {new:.4f} (gain {delta:+.4f}, needs {min_improvement:+.4f})"
        )
    regressions = {}
    for name in guarded:
        if name == metric or name not in candidate or name not in champion:
            continue
        drop = champion[name] - candidate[name]
        if drop > max_regression:
            regressions[name] = drop
            reasons.append(
                f"{name} drops {champion[name]:.4f} -> {candidate[name]:.4f} "
                f"(more than the {max_regression:.4f} allowed)"
            )
    if max_fpr_increase is not None and SERVING_FPR in candidate and SERVING_FPR in champion:
        rise = candidate[SERVING_FPR] - champion[SERVING_FPR]
        if rise > max_fpr_increase:
            regressions[SERVING_FPR] = rise
            reasons.append(
                f"the false-positive rate at the serving bands rises {champion[SERVING_FPR]:.4f}"
                f" -> {candidate[SERVING_FPR]:.4f} (more than the {max_fpr_increase:.4f} allowed)"
            )
    return GateDecision(
        promote=improved and not regressions,
        metric=metric,
        candidate=new,
        champion=old,
        min_improvement=min_improvement,
        max_regression=max_regression,
        regressions=regressions,
        reasons=reasons,
    )


def new_class_scores(report: Mapping[str, Any], name: str) -> dict[str, float]:
    """What a candidate's metrics report on the held-out examples of new class ``name`` says
    about it: how many there were, and the fractions called AI and named ``name``."""
    per_class = report.get("task_b", {}).get("per_class", {}).get(name, {})
    scores = {
        "examples": float(per_class.get("support", 0)),
        "recall_b": float(per_class.get("recall", 0.0)),
    }
    recall_a = report.get("task_a", {}).get("recall")
    if recall_a is not None:
        scores["recall_a"] = float(recall_a)
    return scores


def with_new_classes(
    decision: GateDecision,
    new_classes: Mapping[str, Mapping[str, float]],
    *,
    min_recall: float,
) -> GateDecision:
    """``decision`` with each new class's scores reported (one reason line each), and refused
    when a new class's held-out recall is below ``min_recall``."""
    reasons, below = [], []
    for name, scores in new_classes.items():
        recall = scores.get("recall_b", 0.0)
        line = (
            f"new class {name}: {recall:.4f} of {int(scores.get('examples', 0))} held-out "
            f"examples named it (at least {min_recall:.4f} required)"
        )
        reasons.append(line)
        if recall < min_recall:
            below.append(name)
    if below:
        reasons.append(f"not promoted: new class(es) {', '.join(below)} below the recall asked")
    return decision.model_copy(
        update={
            "promote": decision.promote and not below,
            "new_classes": {name: dict(scores) for name, scores in new_classes.items()},
            "reasons": [*decision.reasons, *reasons],
        }
    )
