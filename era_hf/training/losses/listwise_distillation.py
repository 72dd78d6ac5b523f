"""Listwise distillation: the student's softmax over documents against the teacher's (KL, per query)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def listwise_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.05,
                               exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Per-query ``KL(softmax(teacher / T) || softmax(student / T))`` over the same documents.

    Args:
        student: ``(b, m)`` scores of ``b`` queries against ``m`` documents (they carry the gradient).
        teacher: ``(b, m)`` target scores of the same pairs (no gradient is taken through them).
        temperature: shared softmax temperature; small values weigh the top of the teacher's ranking.
        exclude: optional ``(b, m)`` bool, True where a document leaves a query's list (a document that
            serves as its own query would otherwise dominate both distributions).

    Example:
        >>> s = torch.tensor([[1.0, 0.0, 0.0]])
        >>> listwise_distillation_loss(s, s, 1.0).item()  # identical rankings: nothing to learn
        0.0
        >>> round(listwise_distillation_loss(torch.zeros(1, 3), s, 1.0).item(), 4)
        0.1233
    """
    teacher = teacher.detach()
    if exclude is not None:
        student = student.masked_fill(exclude, float("-inf"))
        teacher = teacher.masked_fill(exclude, float("-inf"))
    target = F.softmax(teacher / temperature, dim=-1)
    log_target = F.log_softmax(teacher / temperature, dim=-1)
    log_student = F.log_softmax(student / temperature, dim=-1)
    terms = target * (log_target - log_student)
    return torch.where(target > 0, terms, torch.zeros_like(terms)).sum(-1)
