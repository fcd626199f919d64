"""One retraining cycle behind the promotion gate (``aigis retrain``).

Order of :func:`run_cycle`, under the registry's lock:

1. find the champion (the registry's version in service, which TorchServe must be serving);
2. pin a snapshot of the label store (skip when nothing changed since the last cycle);
3. build the gold hold-out (human labels only) and select pseudo-labels outside it;
4. read and check the selected images once, into a private spool directory (skipping, and
   counting by reason, those that cannot be read or no longer hash to the labelled image;
   stopping when fewer than ``retrain.min_usable_items`` are left), then fine-tune the
   champion's checkpoint on base data + those pseudo-labels;
5. evaluate candidate and champion on the same hold-out and apply the gate;
6. record the candidate with its lineage; on promotion export its archive and put it in service
   (cache namespace first, then TorchServe's default), or, with ``retrain.canary_percent`` set,
   start it as a canary (:mod:`aigis.canary`) that an operator promotes or aborts; a rejected
   candidate's checkpoint is deleted, its record kept.

With ``add_generator`` the cycle also grows the label set by one generator: step 2 is followed
by gathering its human-labelled examples (refusing, before anything is trained, when fewer than
``retrain.min_examples_new_generator`` exist); step 4 trains on them too, growing the
champion's generator head; step 5 compares the old classes on the old hold-out as always and
reports the new class on its own held-out examples beside the gate's verdict.

``train`` and ``evaluate`` are parameters so that tests can inject a candidate of known quality.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from aigis.canary import CanaryControl
from aigis.fetching import install_fetch_policy
from aigis.promote import ServiceControl
from schemas.settings import Settings
from serving.client.management import ManagementClient
from serving.model.config import DetectorConfig
from serving.torchserve.archive import export_archive, options_like
from training.card import training_summary, write_card
from training.data import Sample
from training.gate import decide, flatten_metrics, new_class_scores, with_new_classes
from training.labelstore import LabelStore
from training.new_generator import NewGenerator, new_generator_examples
from training.registry import DataLineage, ModelVersion, Registry, RegistryError
from training.retrain_data import gold_holdout, mixed_spec
from training.selection import select_pseudo_labels

if TYPE_CHECKING:  # the trainer pulls in torch: imported where it runs, not at import time
    from training.trainer import TrainRequest

log = structlog.get_logger(__name__)

Train = Callable[["TrainRequest"], Path]
"""Fine-tune as the request says and return the checkpoint directory (``request.output``)."""
Evaluate = Callable[[Path, Sequence[Sample], tuple[str, ...]], dict[str, Any]]
"""Metrics report of the checkpoint at a path on hold-out samples labelled with generators."""


@dataclass(frozen=True)
class RetrainOptions:
    base: str
    """Base training data spec (its train and validation splits are used)."""
    holdout: str | None = None
    """Spec whose test split is the base of the gold hold-out; default ``base``."""
    epochs: float | None = 1.0
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int = 0
    threads: int | None = None
    force: bool = False
    """Run even when the store has not changed since the last cycle."""
    add_generator: str | None = None
    """Grow the label set by this generator, from the human decisions naming it."""


@dataclass(frozen=True)
class CycleResult:
    outcome: Literal["promoted", "canary", "rejected", "skipped"]
    champion: str
    reason: str
    record: ModelVersion | None = None

    def describe(self) -> str:
        """A few lines for a terminal: the decision and both models' metrics."""
        if self.record is None:
            return f"retrain: {self.outcome} ({self.reason}); {self.champion} stays in service"
        record = self.record
        lines = [
            f"retrain: candidate {record.version} (from {record.parent}) {self.outcome.upper()}",
            f"  {self.reason}",
            f"  {'metric':<24}{'champion ' + str(record.parent):>16}"
            f"{'candidate ' + record.version:>16}",
        ]
        for name in sorted(set(record.metrics) | set(record.champion_metrics)):
            if name.count(".") != 1 or name.startswith(("timing", "robustness")):
                continue
            old, new = record.champion_metrics.get(name), record.metrics.get(name)
            lines.append(f"  {name:<24}{_fmt(old):>16}{_fmt(new):>16}")
        if record.data is not None:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(record.data.counts.items()))
            lines.append(f"  data: snapshot {record.data.snapshot_id}; {counts}")
        in_service = record.version if self.outcome == "promoted" else self.champion
        lines.append(f"  in service: {in_service}")
        return "\n".join(lines)


def train_checkpoint(request: TrainRequest) -> Path:
    """The real trainer (:func:`training.trainer.train`)."""
    from training.trainer import train

    return train(request).output


def evaluate_checkpoint(
    path: Path,
    samples: Sequence[Sample],
    generators: tuple[str, ...],
    bands: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """:func:`training.evaluate.evaluate_model` of the checkpoint at ``path``, in fp32, with the
    rates of ``bands`` (human, AI threshold) when given."""
    from serving.model.predictor import Predictor
    from training.evaluate import EvalOptions, evaluate_model

    predictor = Predictor.from_checkpoint(path, precision="fp32")
    return evaluate_model(predictor, samples, EvalOptions(generators=generators, bands=bands))


def _rewrite_card(checkpoint: Path, report: dict[str, Any], holdout: str) -> None:
    """Rewrite a promoted candidate's model card with its scores on the gold hold-out."""
    if "task_a" not in report:  # an Evaluate other than evaluate_checkpoint's shape
        return
    config = DetectorConfig.load(checkpoint)
    data = {"spec": holdout, "split": "test", "generators": list(config.generators)}
    evaluation = {**report, "data": {**data, "holdout_classes": None, "limit": None}}
    write_card(checkpoint, config, training_summary(checkpoint), evaluation)


def run_cycle(
    settings: Settings,
    options: RetrainOptions,
    *,
    train: Train = train_checkpoint,
    evaluate: Evaluate = evaluate_checkpoint,
    control: ServiceControl | None = None,
) -> CycleResult:
    """Run one cycle (see the module docstring). Raises AigisError subclasses on failure."""
    if evaluate is evaluate_checkpoint:  # the real one also measures the serving bands
        bands = (settings.worker.human_threshold, settings.worker.ai_threshold)
        evaluate = functools.partial(evaluate_checkpoint, bands=bands)
    registry = Registry(settings.registry_dir)
    install_fetch_policy(settings.fetch)
    with (
        registry.lock(),
        _control(settings, registry, control) as service,
        tempfile.TemporaryDirectory(prefix="aigis-retrain-") as spool,  # owner-only, removed
    ):
        champion = _champion(registry, service)
        canaries = CanaryControl(settings, service)
        running = canaries.state()
        if running is not None:  # its candidate would be pruned, or a second canary refused
            reason = f"a canary of version {running.version} is running: promote or abort it first"
            return CycleResult("skipped", champion.version, reason)
        store = LabelStore.from_settings(settings)
        snapshot = store.snapshot(pin=True)
        last = _last_snapshot(registry)
        if last == snapshot.id and not (options.force or options.add_generator):
            return CycleResult(
                "skipped",
                champion.version,
                f"the label store has not changed since snapshot {last}",
            )
        assert champion.checkpoint is not None
        generators = DetectorConfig.load(Path(champion.checkpoint)).generators
        holdout_spec = options.holdout or options.base
        concurrency = settings.worker.fetch_concurrency
        added = None
        if options.add_generator is not None:
            added = new_generator_examples(
                store,
                snapshot,
                options.add_generator,
                generators,
                min_examples=settings.retrain.min_examples_new_generator,
                max_examples=settings.retrain.max_per_class,
                concurrency=concurrency,
            )
            log.info("retrain_new_generator", name=added.name, **added.counts)
        holdout = gold_holdout(
            holdout_spec,
            store,
            snapshot,
            generators,
            concurrency=concurrency,
            leave_out=added.name if added else None,
        )
        selection = select_pseudo_labels(
            store.read(snapshot),
            threshold=settings.retrain.pseudo_label_threshold,
            max_per_class=settings.retrain.max_per_class,
            exclude=holdout.exclude,
            generators=generators,
        )
        log.info("retrain_selected", snapshot=snapshot.id, **selection.counts, **holdout.counts)
        if selection.counts["selected"] == 0 and added is None:
            return CycleResult(
                "skipped",
                champion.version,
                f"no pseudo-label of snapshot {snapshot.id} passes selection {selection.counts}",
            )
        spec, sizes = mixed_spec(
            options.base,
            store,
            selection.table,
            spool=Path(spool),
            min_usable=settings.retrain.min_usable_items if added is None else 0,
            concurrency=concurrency,
            added=added.train if added else (),
            generators=added.generators if added else generators,
        )
        log.info("retrain_images", snapshot=snapshot.id, **sizes)
        version = registry.next_version(taken=tuple(service.served_versions()))
        output = registry.checkpoint_dir(version)
        candidate = train(_request(options, spec, output, champion, version, added is not None))
        report = evaluate(candidate, holdout.samples, generators)
        metrics = flatten_metrics(report)
        champion_metrics = flatten_metrics(
            evaluate(Path(champion.checkpoint), holdout.samples, generators)
        )
        config = settings.retrain
        gate = decide(
            metrics,
            champion_metrics,
            metric=config.metric,
            min_improvement=config.min_improvement,
            max_regression=config.max_regression,
            max_fpr_increase=config.max_fpr_increase,
        )
        if added is not None:
            gate = with_new_classes(
                gate,
                {added.name: _new_class(evaluate, candidate, added)},
                min_recall=config.min_new_class_recall,
            )
        canary = settings.retrain.canary_percent if gate.promote else None
        record = ModelVersion(
            version=version,
            name=settings.serving.model_name,
            status=("registered" if canary else "promoted") if gate.promote else "rejected",
            parent=champion.version,
            checkpoint=str(candidate) if gate.promote else None,
            data=DataLineage(
                base=options.base,
                holdout=holdout_spec,
                store_url=store.url,
                snapshot_id=snapshot.id,
                counts={
                    **sizes,
                    **selection.counts,
                    **holdout.counts,
                    **(added.counts if added else {}),
                },
            ),
            metrics=metrics,
            champion_metrics=champion_metrics,
            gate=gate,
        )
        log.info(
            "retrain_gate",
            version=version,
            parent=champion.version,
            promote=gate.promote,
            metric=gate.metric,
            candidate_value=gate.candidate,
            champion_value=gate.champion,
            regressions=gate.regressions,
        )
        if not gate.promote:
            registry.record(record)
            shutil.rmtree(output, ignore_errors=True)
            return CycleResult("rejected", champion.version, gate.summary(), record)
        _rewrite_card(candidate, report, f"{holdout_spec} + human labels of {snapshot.id}")
        archive = export_archive(
            candidate,
            registry.archives_dir,
            options_like(champion.archive, settings.serving.model_name, version),
        )
        record = record.model_copy(update={"archive": str(archive.path)})
        registry.record(record)
        if canary is not None:
            canaries.start(version, canary)
            reason = f"{gate.summary()}; a canary answers {canary:g}% of cache misses"
            return CycleResult("canary", champion.version, reason, record)
        service.activate(version, action="promote", note=gate.summary())
        service.prune(settings.retrain.keep_served)
        return CycleResult("promoted", champion.version, gate.summary(), record)


def _champion(registry: Registry, service: ServiceControl) -> ModelVersion:
    champion = registry.in_service()
    if champion is None:
        raise RegistryError(
            f"the registry {registry.root} has no version in service; register the model that "
            "TorchServe serves with `aigis model register ARCHIVE.mar --set-default`"
        )
    served = service.default_version()
    if served != champion.version:
        raise RegistryError(
            f"TorchServe serves version {served} but the registry says {champion.version} is in "
            f"service; make them agree with `aigis model set-default {champion.version}` (or "
            "register the served version) before retraining"
        )
    if not champion.checkpoint or not Path(champion.checkpoint).is_dir():
        raise RegistryError(
            f"the checkpoint of version {champion.version} ({champion.checkpoint}) is missing; "
            "register its archive again with `aigis model register`"
        )
    return champion


def _new_class(evaluate: Evaluate, candidate: Path, added: NewGenerator) -> dict[str, float]:
    """The candidate's scores on the held-out examples of the generator it added."""
    return new_class_scores(evaluate(candidate, added.holdout, added.generators), added.name)


def _last_snapshot(registry: Registry) -> str | None:
    trained = [v for v in registry.versions() if v.data is not None]
    return trained[-1].data.snapshot_id if trained and trained[-1].data else None


def _request(
    options: RetrainOptions,
    spec: str,
    output: Path,
    champion: ModelVersion,
    version: str,
    grow: bool = False,
) -> TrainRequest:
    from training.trainer import TrainRequest

    return TrainRequest(
        data=spec,
        output=output,
        architecture=None,
        init_from=Path(champion.checkpoint or ""),
        grow_generators=grow,
        epochs=options.epochs,
        max_steps=options.max_steps,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        seed=options.seed,
        threads=options.threads,
        name=DetectorConfig.load(Path(champion.checkpoint or "")).name,
        version=version,
        progress=False,
    )


@contextmanager
def _control(
    settings: Settings, registry: Registry, given: ServiceControl | None
) -> Iterator[ServiceControl]:
    """``given``, or a ServiceControl with its own management client, closed on exit."""
    if given is not None:
        yield given
        return
    with ManagementClient(settings.serving, key_file=settings.serving_key_file) as client:
        yield ServiceControl(settings, registry, client)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
