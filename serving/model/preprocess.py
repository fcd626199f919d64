"""Pre-processing shared by training and serving: images and captions to model inputs.

Images go through CLIP's pre-processing (resize the shortest edge, centre crop, scale, normalise)
in :class:`~serving.model.pixels.PixelPipeline`, which reproduces the checkpoint's CLIP image
processor to within two 8-bit grey levels at a fraction of its cost; the processor itself runs
only for a checkpoint whose saved settings the pipeline does not reproduce. Captions go through
the checkpoint's tokenizer, prefixed and truncated as the config says and padded to the longest
caption of the batch, not to the maximum: padding every caption to 128 tokens halves throughput
and the attention mask does not give the time back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

# CLIP's image processor on its Pillow backend: the default backend needs torchvision, which
# this project does not install, and would fall back to this one with a warning.
from transformers import CLIPImageProcessorPil as ImageProcessor
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from serving.model.config import DetectorConfig, PreprocessConfig
from serving.model.pixels import PixelPipeline

__all__ = ["ImageProcessor", "Preprocessor", "make_image_processor"]


def make_image_processor(config: PreprocessConfig) -> ImageProcessor:
    """CLIP's image processor with the sizes and normalisation of ``config``."""
    side = config.image_size
    return ImageProcessor(
        do_resize=True,
        size={"shortest_edge": side},
        resample=Image.Resampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": side, "width": side},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        do_convert_rgb=True,
    )


class Preprocessor:
    """Turns images and captions into the keyword arguments of ``Detector.forward``."""

    def __init__(
        self,
        config: DetectorConfig,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.pixels: PixelPipeline | None = None
        if _settings(image_processor) == _settings(make_image_processor(config.preprocess)):
            self.pixels = PixelPipeline(config.preprocess)

    def prepare(self, image: Image.Image) -> Image.Image | torch.Tensor:
        """What :meth:`pixel_values` does to ``image`` alone, safe to run on any thread: its
        8-bit crop (:meth:`PixelPipeline.crop`) in memory of its own (a crop is a view of the
        whole resized image, which it would keep alive), or the image itself where the
        reference processor runs."""
        if self.pixels is None:
            return image
        return self.pixels.crop(image).clone(memory_format=torch.contiguous_format)

    def pixel_values(
        self, images: Sequence[Image.Image | torch.Tensor], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Float tensor (batch, 3, size, size) of RGB images (see serving.imageio) or of what
        :meth:`prepare` made of them; ``out``: rows to fill instead of a new tensor."""
        if self.pixels is not None:
            return self.pixels(images, out)
        out = self.image_processor(images=list(images), return_tensors="pt")
        pixel_values: torch.Tensor = out["pixel_values"]
        return pixel_values

    def captions(self, captions: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` padded to the longest caption of the batch.

        A missing caption is the empty string (``[CLS] [SEP]`` for BERT).
        """
        settings = self.config.preprocess
        texts = [settings.caption_prefix + (caption or "") for caption in captions]
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=settings.max_caption_tokens,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def __call__(
        self, images: Sequence[Image.Image], captions: Sequence[str | None]
    ) -> dict[str, torch.Tensor]:
        """Model inputs for one batch; captions are only encoded when the model reads them."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions; give one each")
        inputs = {"pixel_values": self.pixel_values(images)}
        if self.config.reads_caption:
            inputs.update(self.captions(captions))
        return inputs


def _settings(processor: ImageProcessor) -> dict[str, object]:
    """What decides a processor's output: its saved settings, without names and versions."""
    settings = processor.to_dict()
    for key in ("image_processor_type", "processor_class", "transformers_version"):
        settings.pop(key, None)
    return settings
