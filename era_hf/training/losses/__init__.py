"""Training losses, one per file. Every loss returns *per-item* values (shape ``(batch,)``):
the trainer weights them so that a global batch split over several processes gives the same
gradient as one process (see :mod:`era_hf.training.loop`).

Alignment losses (stage 1) compare the head's L2-normalised output with the document
encoder's embedding of the same text: :func:`cosine_loss` (the reference), :func:`mse_loss`,
:func:`smooth_l1_loss`; an anchored score map may be refined by :func:`listwise_distillation_loss`.
Stage 2 uses :func:`info_nce_loss`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...errors import ERAError
from .cosine import cosine_loss
from .info_nce import info_nce_loss
from .listwise_distillation import listwise_distillation_loss
from .mse import mse_loss
from .smooth_l1 import smooth_l1_loss

AlignmentLoss = Callable[..., torch.Tensor]

ALIGNMENT_LOSSES: dict[str, AlignmentLoss] = {
    "cosine": cosine_loss,
    "mse": mse_loss,
    "smooth_l1": smooth_l1_loss,
}


def alignment_loss(name: str) -> AlignmentLoss:
    """The per-item alignment loss called ``name``."""
    if name not in ALIGNMENT_LOSSES:
        raise ERAError(f"unknown alignment loss {name!r}; expected one of {', '.join(ALIGNMENT_LOSSES)}")
    return ALIGNMENT_LOSSES[name]


__all__ = ["ALIGNMENT_LOSSES", "alignment_loss", "cosine_loss", "info_nce_loss", "listwise_distillation_loss", "mse_loss", "smooth_l1_loss"]
