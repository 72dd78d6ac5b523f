"""Adapter heads: small trainable maps from query-encoder space to document-encoder space.

PEFT-style: the head is the only trained part and is saved apart from the frozen encoders.
Every head returns L2-normalised vectors. With an ``anchor`` (the document encoder's own
embedding of the query), the output is ``normalize(anchor + project(x))``: the head learns
a correction on top of the cheap baseline. Self-contained: travels as remote code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ERAError


class ERAHead(nn.Module):
    """Base class: subclasses implement :meth:`project` (the raw, unnormalised map)."""

    #: names of the parameters / buffers that ``project`` is linear in (its output scales with them)
    output_tensors: tuple[str, ...] = ()

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim

    def project(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def scale_projection_(self, factor: float) -> None:
        """Multiply ``project``'s output by ``factor``, in the weights: with an anchor the head then outputs
        ``normalize(anchor + factor · project(x))`` (0 = the anchor alone)."""
        tensors = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        for name in self.output_tensors:
            tensors[name].mul_(factor)

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        y = self.project(x)
        if anchor is not None:
            y = anchor + y
        return F.normalize(y, dim=-1)


class LinearHead(ERAHead):
    """The paper's head: ``Linear(in_dim, out_dim, bias=True)`` then L2 norm.

    ``zero_init=True`` starts at the zero map (used with an anchor: the untrained model is
    then exactly the anchor, i.e. the cheap baseline).
    """

    output_tensors = ("proj.weight", "proj.bias")

    def __init__(self, in_dim: int, out_dim: int, zero_init: bool = False) -> None:
        super().__init__(in_dim, out_dim)
        self.proj = nn.Linear(in_dim, out_dim, bias=True)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class LowRankResidualHead(ERAHead):
    """``x @ W0 + (x @ A) @ B + b`` with a fixed (buffer) or learned ``W0`` and rank-``r`` ``A B``.

    ``W0`` starts like a ``Linear`` weight (or at zero with ``zero_init``) and is usually set from a
    closed-form fit; ``B`` starts at zero so the low-rank correction is initially off.
    """

    output_tensors = ("w0", "b", "bias")

    def __init__(self, in_dim: int, out_dim: int, rank: int = 16, learn_w0: bool = False,
                 zero_init: bool = False) -> None:
        super().__init__(in_dim, out_dim)
        if not isinstance(rank, int) or rank <= 0:
            raise ERAError(f"low_rank_residual head: rank must be a positive integer, got {rank!r}")
        bound = 0.0 if zero_init else in_dim**-0.5
        w0 = torch.empty(in_dim, out_dim).uniform_(-bound, bound)
        if learn_w0:
            self.w0 = nn.Parameter(w0)
        else:
            self.register_buffer("w0", w0, persistent=True)
        self.a = nn.Parameter(torch.randn(in_dim, rank) / in_dim**0.5)
        self.b = nn.Parameter(torch.zeros(rank, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w0 + (x @ self.a) @ self.b + self.bias


class MLPHead(ERAHead):
    """Residual two-layer head: ``Linear(x) + W2 · GELU(W1 · x)``; ``W2`` starts at zero."""

    output_tensors = ("linear.weight", "linear.bias", "down.weight", "down.bias")

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, zero_init: bool = False) -> None:
        super().__init__(in_dim, out_dim)
        hidden_dim = hidden_dim or 2 * out_dim
        self.linear = nn.Linear(in_dim, out_dim, bias=True)
        self.up = nn.Linear(in_dim, hidden_dim)
        self.down = nn.Linear(hidden_dim, out_dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.down(F.gelu(self.up(x)))


HEADS: dict[str, type[ERAHead]] = {
    "linear": LinearHead,
    "low_rank_residual": LowRankResidualHead,
    "mlp": MLPHead,
}


def build_head(head_type: str, in_dim: int, out_dim: int, **kwargs: Any) -> ERAHead:
    """Build a head by name.

    Example:
        >>> head = build_head("linear", 768, 384)
        >>> head(torch.randn(2, 768)).shape
        torch.Size([2, 384])
    """
    if head_type not in HEADS:
        raise ERAError(f"unknown head type {head_type!r}; expected one of {', '.join(HEADS)}")
    for name in ("rank", "hidden_dim"):  # sizes: 0 keeps the head's default where it has one
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ERAError(f"head setting {name} must be a non-negative integer, got {value!r}")
    try:
        return HEADS[head_type](in_dim, out_dim, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ERAError(f"bad settings for head {head_type!r}: {kwargs} ({str(err).splitlines()[0]})") from None
