"""Temperature scaling of head A: one scalar fitted on validation, stored in the checkpoint."""

from __future__ import annotations

from typing import Final

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

MIN_TEMPERATURE: Final[float] = 0.05
MAX_TEMPERATURE: Final[float] = 20.0
"""Bounds of the fitted temperature. A validation set the model separates perfectly drives the
likelihood-optimal temperature towards zero; the bound keeps probabilities finite and honest."""


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the binary NLL of sigmoid(logits / T) against ``labels`` (0/1).

    Returns 1.0 for an empty or single-class set, where a temperature cannot be fitted.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if logits.size == 0 or labels.min() == labels.max():
        return 1.0
    z = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # untyped in torch
    fitted = float(log_t.detach().exp())
    if not np.isfinite(fitted):
        return MIN_TEMPERATURE
    return float(np.clip(fitted, MIN_TEMPERATURE, MAX_TEMPERATURE))


def binary_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary negative log-likelihood of sigmoid(logits / temperature)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    return float(F.binary_cross_entropy_with_logits(z, y))
