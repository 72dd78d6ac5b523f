"""Cosine alignment loss (the reference): ``1 - cos(pred, target)`` per item."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_loss(pred: torch.Tensor, target: torch.Tensor, **_: object) -> torch.Tensor:
    """Per-item ``1 - cos``; its batch mean equals the reference's ``1 - cosine_similarity(...).mean()``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> cosine_loss(x, torch.tensor([[1.0, 0.0], [1.0, 0.0]])).tolist()
        [0.0, 1.0]
    """
    return 1.0 - F.cosine_similarity(pred, target, dim=-1)
