"""Shrinking a trained anchored head's correction toward the cheap baseline (ours, not the paper).

An anchored head outputs ``normalize(anchor + project(x))``: the document encoder's own query embedding plus a
learned correction. Trained on some collections, the full correction overshoots on others. After training,
:func:`shrink_correction` tries each scale of ``adaptation.shrink_scales`` on the validation queries and keeps the
smallest one within ``adaptation.shrink_margin_se`` standard errors of the best (the one-standard-error rule at 1),
written into the head's weights: the saved model is a plain head (a scale of 1 changes nothing). Measured
(docs/quality.md, "Shrinking the correction"): leave-one-out it raised four of the five held-out collections on the
benchmark split, and three of six test splits then kept every collection within 0.005 of the cheap index; with one
collection's few validation queries (one adapter per collection) it shrinks too far.

Example:
    >>> import numpy as np
    >>> from era_hf.heads import build_head
    >>> head = build_head("linear", 4, 2)
    >>> norm = float(head.proj.weight.detach().norm())
    >>> def val(h):  # per-task arrays of per-query nDCG@10; here: best with the weights at half their size
    ...     ratio = float(h.proj.weight.detach().norm()) / norm
    ...     return [np.array([1 - abs(ratio - 0.5)] * 2)]
    >>> shrink_correction(head, val, scales=(0.0, 0.5, 1.0), margin_se=0.0)["scale"]
    0.5
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .alignment import pick_by_validation


def shrink_correction(head: torch.nn.Module, val_ndcg: Callable[[torch.nn.Module], Sequence[np.ndarray]],
                      scales: Sequence[float], margin_se: float) -> dict[str, Any]:
    """Scale ``head``'s projection (in place) by the scale of ``scales`` that validation picks (``val_ndcg``: head
    -> per-task arrays of per-query nDCG@10; :func:`~era_hf.training.alignment.pick_by_validation` with
    ``margin_se``). Returns the record."""
    def scored(s: float) -> Sequence[np.ndarray]:
        trial = copy.deepcopy(head)
        trial.scale_projection_(s)
        return val_ndcg(trial)

    scale, record = pick_by_validation(list(scales), scored, margin_se, "scale")
    head.scale_projection_(scale)
    return {"scale": scale, **record,
            "selected_by": "validation nDCG@10 of the scaled correction" + record["selected_by"]}


__all__ = ["shrink_correction"]
