"""Smooth-L1 (Huber) alignment loss: per item, the mean over dimensions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, **_: object) -> torch.Tensor:
    """Per-item smooth L1; its batch mean equals ``torch.nn.SmoothL1Loss(beta=beta)``.

    Example:
        >>> smooth_l1_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])).tolist()
        [0.25]
    """
    return F.smooth_l1_loss(pred, target, reduction="none", beta=beta).mean(dim=-1)
