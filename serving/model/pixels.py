"""Images to the model's pixel tensor: CLIP's pre-processing, at the speed of the decoder.

What CLIP's image processor does (transformers' ``CLIPImageProcessor``: resize the short side to
``image_size`` with an antialiased bicubic filter, centre-crop a square of ``image_size``, scale to
0..1, subtract the mean and divide by the standard deviation), in fewer passes over the pixels:

* the resize runs on 8-bit pixels in torch's antialiased bicubic kernel (the filter Pillow uses,
  vectorised: about five times Pillow's own bicubic resize on this project's CPUs), reading the
  decoded image's buffer in place;
* only the centre square is written, straight into one preallocated float batch, which is then
  scaled and normalised in place: one multiply and one add per value, no temporaries.

The result differs from the reference processor by at most two 8-bit grey levels per value
(tests/serving/test_pixels.py states the tolerance; bench/inputs.py measures both).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (torch's own spelling)
from PIL import Image

from serving.model.config import PreprocessConfig

__all__ = ["PixelPipeline", "resized_size"]

# ``np.asarray`` of a Pillow image is a fresh read-only copy of its buffer, and torch warns when
# it wraps read-only memory, since it cannot stop a writer; nothing here writes to it. Filtered
# once here: a ``warnings.catch_warnings`` block per image would change the process's filters
# from several decoding threads at once (it is not thread-safe).
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def resized_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) of an image whose short side is resized to ``side``, the long side
    rounded down as CLIP's processor rounds it."""
    if min(width, height) == side:
        return width, height
    if width < height:
        return side, int(side * height / width)
    return int(side * width / height), side


class PixelPipeline:
    """RGB images to a float tensor (batch, 3, side, side) normalised as ``config`` says."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.side = config.image_size
        std = torch.tensor(config.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        # (level / 255 - mean) / std == level * scale + shift
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    def __call__(
        self, images: Sequence[Image.Image | torch.Tensor], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The batch of ``images``, any of them already cropped by :meth:`crop` (on any device).
        ``out``: a float tensor of at least ``len(images)`` rows to fill (its first rows are
        returned) instead of a new one, whose pages the system would map afresh at every call;
        without it the batch is made on the device of the first crop given, else the CPU."""
        side = self.side
        if out is None:
            device = next((i.device for i in images if isinstance(i, torch.Tensor)), None)
            batch = torch.empty((len(images), 3, side, side), dtype=torch.float32, device=device)
        else:
            batch = out[: len(images)]
        for index, image in enumerate(images):
            batch[index].copy_(image if isinstance(image, torch.Tensor) else self.crop(image))
        if batch.device != self._scale.device:  # crops on a GPU (torchserve.device_decoding)
            self._scale, self._shift = self._scale.to(batch.device), self._shift.to(batch.device)
        return batch.mul_(self._scale).add_(self._shift)

    def crop(self, image: Image.Image) -> torch.Tensor:
        """The image's centre square as 8-bit (3, side, side), resized as CLIP resizes it: the
        part of the pipeline that reads one image alone, safe to run on any thread."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        levels = _levels(image)
        width, height = resized_size(image.width, image.height, self.side)
        if (width, height) != image.size:
            levels = F.interpolate(levels, size=(height, width), mode="bicubic", antialias=True)
        top, left = (height - self.side) // 2, (width - self.side) // 2
        return levels[0, :, top : top + self.side, left : left + self.side]


def _levels(image: Image.Image) -> torch.Tensor:
    """The pixels of ``image`` as (1, 3, H, W) uint8, a channels-last view of one copy."""
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1).unsqueeze(0)
