"""The detector's configuration as a transformers config, so ``AutoConfig`` and ``AutoModel`` load
checkpoints and ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` work.

:class:`~serving.model.config.DetectorConfig` (pydantic, torch-free) stays the one place that
validates the fields; the config classes here carry the same fields, hold the encoder configs as
transformers sub-configs (any ``model_type`` ``AutoConfig`` knows), validate through
``DetectorConfig`` when built, and write ``config.json`` in the same form as
``DetectorConfig.save``. One class per architecture, each its own ``model_type``
(``aigis-fused``, ``aigis-clip-linear``, ``aigis-clip-contrastive``), so ``AutoModel`` picks the
architecture from the file. Registration happens when :mod:`serving.model.detector` is imported.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar, Final

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from serving.model.config import HUB_KEYS, MODEL_CLASSES, DetectorConfig, model_type

__all__ = [
    "ClipContrastiveConfig",
    "ClipLinearConfig",
    "DetectorHubConfig",
    "FusedConfig",
    "config_dict",
    "hub_config",
]

# What every transformers config has and a detector config does not: left out of the
# detector's view and of config.json.
_BASE_FIELDS: Final[frozenset[str]] = frozenset(f.name for f in fields(PreTrainedConfig))
_ENCODERS: Final[tuple[str, str]] = ("text_config", "vision_config")
# Fields whose name transformers claims for itself (it drops ``temperature`` as a generation
# setting when it builds a config), held here under another name and written back as they are.
_RENAMED: Final[dict[str, str]] = {"temperature": "calibration_temperature"}


def config_dict(config: PreTrainedConfig) -> dict[str, Any]:
    """An encoder's transformers config as the JSON-able dict a DetectorConfig stores (with its
    ``model_type``, without what describes the saving run or a classification head)."""
    values = config.to_dict()
    for key in HUB_KEYS - {"model_type"} | {"id2label", "label2id"}:
        values.pop(key, None)
    return values


class DetectorHubConfig(PreTrainedConfig):
    """Base of the three architecture configs; carries every DetectorConfig field."""

    architecture_name: ClassVar[str] = ""
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "text_config": SubConfigSpec(AutoConfig, model_type="bert", optional=True),
        "vision_config": SubConfigSpec(AutoConfig, model_type="clip_vision_model"),
    }
    text_config: dict[str, Any] | PreTrainedConfig | None = None
    vision_config: dict[str, Any] | PreTrainedConfig | None = None

    def validate_detector(self) -> None:
        """Run by transformers' strict dataclass checks whenever a config is built: the same
        validation as DetectorConfig. A bare default instance (no ``architecture``, as
        transformers builds to diff against) is not a detector and is not checked."""
        if getattr(self, "architecture", None) is not None:
            self.detector()

    def detector(self) -> DetectorConfig:
        """The validated DetectorConfig these fields describe (pydantic ValidationError, a
        ValueError, when they are not valid)."""
        values: dict[str, Any] = {}
        for name in DetectorConfig.model_fields:
            if name in _ENCODERS:
                encoder = getattr(self, name)
                values[name] = config_dict(encoder) if encoder is not None else None
            elif hasattr(self, held := _RENAMED.get(name, name)):
                values[name] = getattr(self, held)
        if values.get("architecture") != self.architecture_name:
            raise ValueError(
                f"config of model_type {self.model_type} says architecture "
                f"{values.get('architecture')!r}, not {self.architecture_name!r}"
            )
        return DetectorConfig.model_validate(values)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """As transformers reads config.json, with the renamed fields moved aside first."""
        return super().from_dict(_held(config_dict), **kwargs)

    def to_diff_dict(self) -> dict[str, Any]:
        """What ``save_pretrained`` writes: the DetectorConfig fields, as DetectorConfig.save."""
        if getattr(self, "architecture", None) is None:  # a bare default instance
            return super().to_diff_dict()
        return {
            "model_type": self.model_type,
            "architectures": [MODEL_CLASSES[self.architecture_name]],
            "transformers_version": self.transformers_version,
            **self.detector().model_dump(mode="json"),
        }

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        return {k: v for k, v in values.items() if k not in _BASE_FIELDS or k in _ENCODERS}


@strict
class FusedConfig(DetectorHubConfig):
    model_type = model_type("fused")
    architecture_name = "fused"


@strict
class ClipLinearConfig(DetectorHubConfig):
    model_type = model_type("clip-linear")
    architecture_name = "clip-linear"


@strict
class ClipContrastiveConfig(DetectorHubConfig):
    model_type = model_type("clip-contrastive")
    architecture_name = "clip-contrastive"


HUB_CONFIGS: Final[dict[str, type[DetectorHubConfig]]] = {
    cls.architecture_name: cls for cls in (FusedConfig, ClipLinearConfig, ClipContrastiveConfig)
}


def hub_config(config: DetectorConfig) -> DetectorHubConfig:
    """The transformers config of a DetectorConfig (its architecture's class)."""
    return HUB_CONFIGS[config.architecture](**_held(config.model_dump(mode="json")))


def _held(values: dict[str, Any]) -> dict[str, Any]:
    return {_RENAMED.get(key, key): value for key, value in values.items()}
