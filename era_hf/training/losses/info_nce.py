"""InfoNCE over cosine logits: the positive against its own negatives (and optional extras)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce_loss(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.05,
                  extra: torch.Tensor | None = None, extra_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-item cross-entropy of ``[pos, neg_1..neg_k (, extra_1..extra_m)] / temperature`` with target 0.

    Args:
        query: ``(b, d)`` L2-normalised head outputs.
        positive: ``(b, d)`` L2-normalised positive documents.
        negatives: ``(b, k, d)`` L2-normalised negatives of each item.
        temperature: logit temperature (reference 0.05).
        extra: optional ``(m, d)`` documents shared by the batch (in-batch negatives).
        extra_mask: ``(b, m)`` bool, True where ``extra[j]`` may serve as a negative of item ``i``.

    The reference's loss is the batch mean of these values (no in-batch negatives).

    Example:
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> round(info_nce_loss(q, q, torch.tensor([[[0.0, 1.0]]]), 1.0).item(), 4)  # -log(e/(e+1))
        0.3133
    """
    pos = (query * positive).sum(-1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", query, negatives)
    logits = [pos, neg]
    if extra is not None and extra.shape[0] > 0:
        sims = query @ extra.T
        if extra_mask is not None:
            sims = sims.masked_fill(~extra_mask, float("-inf"))
        logits.append(sims)
    logits = torch.cat(logits, dim=-1) / temperature
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target, reduction="none")
