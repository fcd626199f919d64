"""Growing a detector's label set: new generator classes added after the ones it was trained on.

The grown model keeps every trained weight. The rows of the generator head (``head_b``) for the
old classes are copied; each new row starts as the mean of the old generators' rows, so its logit
is the mean of theirs: below the winning class's wherever the old model was sure, so the old
classes keep their ranking, yet close enough that fine-tuning moves the new class up within a
few hundred steps (a row started far below every class barely moves at fine-tuning rates).
clip-contrastive has no head: its new classes get prompts of their own
(:func:`serving.model.config.generator_prompts`), which its text encoder already encodes.
"""

from __future__ import annotations

import torch

from schemas.labels import check_label_set
from serving.errors import CheckpointError
from serving.model.checkpoint import Checkpoint
from serving.model.config import DetectorConfig, generator_prompts
from serving.model.detector import build_detector


def grow_generators(checkpoint: Checkpoint, generators: tuple[str, ...]) -> Checkpoint:
    """``checkpoint`` with its label set grown to ``generators``, which must list the old classes
    first, in their order, then at least one new one. Raises CheckpointError otherwise."""
    config = checkpoint.config
    old = config.generators
    try:
        check_label_set(generators)
    except ValueError as err:
        raise CheckpointError(
            f"cannot grow the label set to {list(generators)[:16]}: {err}"
        ) from None
    if generators[: len(old)] != old or len(generators) == len(old):
        raise CheckpointError(
            f"cannot grow label set {list(old)} into {list(generators)}: the new set must list "
            "the old classes first, in the same order, then the new ones",
            config.name,
        )
    prompts_b = config.prompts_b
    if prompts_b:  # explicit prompts: keep them, and give the new classes the default ones
        prompts_b = (*prompts_b, *generator_prompts(generators)[len(old) :])
    # clip-contrastive's prompts are tokenised again for the grown set (build_detector does it).
    grown = {"generators": generators, "prompts_b": prompts_b, "prompt_token_ids": ()}
    grown_config = DetectorConfig.model_validate({**config.model_dump(), **grown})
    state = checkpoint.model.state_dict()
    for buffer in ("prompt_ids", "prompt_mask"):  # of the old prompts: rebuilt with the new ones
        state.pop(buffer, None)
    if "head_b.weight" in state:
        state["head_b.weight"], state["head_b.bias"] = _grown_rows(
            state["head_b.weight"], state["head_b.bias"], len(generators)
        )
    model = build_detector(grown_config, checkpoint.tokenizer)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"prompt_ids", "prompt_mask"}:
        raise CheckpointError(
            f"the grown model does not fit the checkpoint's weights: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}",
            config.name,
        )
    model.train(checkpoint.model.training)
    return Checkpoint(
        model.detector_config, model, checkpoint.tokenizer, checkpoint.image_processor
    )


def _grown_rows(
    weight: torch.Tensor, bias: torch.Tensor, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    new = rows - weight.shape[0]
    # Row 0 is the real class, which Task B never trains on AI images: not a generator's row.
    mean_weight, mean_bias = weight[1:].mean(dim=0), bias[1:].mean()
    grown_weight = torch.cat([weight, mean_weight.expand(new, -1)])
    grown_bias = torch.cat([bias, mean_bias.expand(new)])
    return grown_weight, grown_bias
