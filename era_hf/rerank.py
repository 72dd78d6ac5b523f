"""Re-ranking the first search's top candidates with the query encoder on both sides (ours, not the paper).

ERA searches the cheap index with one strong-encoder pass per query. Re-ranking adds ``top_k`` strong-encoder
passes per query, over the texts of the first search's ``top_k`` candidates (the index keeps them): each candidate
gets the z-score of its first-stage score (over the candidates) plus ``weight`` times the z-score of the strong
encoder's cosine between the raw query and the candidate text (:func:`~era_hf.lexical.standardized` per query).
Candidates below ``top_k`` are never rescored, so the cheap index is still never re-encoded, and a document's
strong vector is computed only when it is a candidate.

The defaults (``top_k`` 50, ``weight`` 1) were chosen on judged queries that training never reads
(``benchmarks/transfer_selection.py --protocol in_domain|per_task``; docs/quality.md, "Re-ranking the candidates
with the query encoder on both sides"), not on test queries.

Example:
    >>> import numpy as np
    >>> rerank = Rerank(top_k=2, weight=2.0)
    >>> ranked, scores = rerank.apply([["a", "b", "c"]], np.array([[0.9, 0.8, 0.1]]),
    ...                               np.array([[0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
    ...                               {"a": 0, "b": 1, "c": 2})
    >>> ranked
    [['b', 'a']]
"""

from __future__ import annotations

import argparse
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ERAError

#: Candidates re-ranked per query (strong-encoder passes per query), chosen on never-read judged queries.
DEFAULT_TOP_K = 50
#: The strong encoder's z-scored cosine's weight against the first stage's z-scored score.
DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class Rerank:
    """How to re-rank: the first search's ``top_k`` candidates, rescored by ``z(first) + weight * z(strong)``.

    Args:
        top_k: candidates re-ranked per query (each costs one strong-encoder pass the first time it is a candidate).
        weight: the strong encoder's weight (> 0; 1 gives both stages equal weight).
    """

    top_k: int = DEFAULT_TOP_K
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 2:
            raise ERAError(f"rerank top_k (candidates re-ranked per query) must be an integer >= 2, got "
                           f"{self.top_k!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, numbers.Real) \
                or not np.isfinite(float(self.weight)) or self.weight <= 0:
            raise ERAError(f"rerank weight (the query encoder's weight against the first search) must be a finite "
                           f"number > 0, got {self.weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"top_k": int(self.top_k), "weight": float(self.weight)}

    def fuse(self, first: np.ndarray, strong: np.ndarray) -> np.ndarray:
        """Per row: ``z(first) + weight * z(strong)`` over the row's candidates."""
        from .lexical import fuse_lexical

        return fuse_lexical(first, strong, self.weight)

    def apply(self, ranked: Sequence[Sequence[str]], scores: np.ndarray, query_vectors: np.ndarray,
              document_vectors: np.ndarray, row_of: Mapping[str, int]) -> tuple[list[list[str]], np.ndarray]:
        """Re-rank each query's first ``top_k`` candidates.

        Args:
            ranked: per query, the first search's doc ids, best first (at least ``top_k`` unless the corpus is
                smaller; any beyond are ignored).
            scores: ``(n, >= len(ranked[i]))`` the first search's scores, aligned with ``ranked``.
            query_vectors: ``(n, dim)`` the strong encoder's embeddings of the queries (before any head).
            document_vectors: ``(m, dim)`` the strong encoder's embeddings of documents, rows by ``row_of[doc_id]``.

        Returns:
            ``(ranked, scores)``: per query its candidates re-ranked (``min(top_k, len(ranked[i]))`` ids) and the
            float32 ``(n, top_k)`` fused scores, best first (``-inf`` where a query had fewer candidates).
        """
        q = np.asarray(query_vectors, dtype=np.float32)
        d = np.asarray(document_vectors, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        out_ids: list[list[str]] = []
        out_scores = np.full((len(ranked), self.top_k), -np.inf, dtype=np.float32)
        for i, ids in enumerate(ranked):
            candidates = list(ids[:self.top_k])
            if len(candidates) < 2:  # nothing to reorder
                out_ids.append(candidates)
                out_scores[i, :len(candidates)] = np.asarray(scores[i][:len(candidates)], dtype=np.float32)
                continue
            vectors = d[[row_of[c] for c in candidates]]
            strong = vectors @ q[i] / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
            fused = self.fuse(np.asarray(scores[i][:len(candidates)], dtype=np.float32)[None, :], strong[None, :])[0]
            order = np.argsort(-fused, kind="stable")
            out_ids.append([candidates[j] for j in order])
            out_scores[i, :len(candidates)] = fused[order]
        return out_ids, out_scores


def check_supported(config: Any) -> None:
    """Refuse re-ranking for an ERA model (``config``) with LoRA on its query encoder: re-ranking compares documents
    with the base query encoder, which is not what such a model searches with."""
    if getattr(config, "lora", None):
        raise ERAError("re-ranking rescores candidates with the base query encoder; this ERA model fine-tunes its "
                       "query encoder with LoRA, which re-ranking does not support")


def add_rerank_arguments(parser: argparse.ArgumentParser, results: str, cost: str) -> None:
    """``--rerank-top-k`` / ``--rerank-weight`` of a command that searches (``results``: what is re-ranked; ``cost``:
    how the candidates are embedded there); read them back with :func:`rerank_from_arguments`."""
    parser.add_argument("--rerank-top-k", type=int, metavar="K",
                        help=f"re-rank {results} first K results with the query encoder on both sides ({cost}); "
                             "off by default")
    parser.add_argument("--rerank-weight", type=float, metavar="W",
                        help=f"the query encoder's weight when re-ranking (default {DEFAULT_WEIGHT:g}; needs "
                             "--rerank-top-k)")


def rerank_from_arguments(top_k: int | None, weight: float | None,
                          names: tuple[str, str] = ("--rerank-top-k", "--rerank-weight")) -> Rerank | None:
    """The :class:`Rerank` of ``--rerank-top-k`` / ``--rerank-weight`` (None without a top k); ``names``: what
    the two settings are called where they were given, for the error messages (a Space names its variables)."""
    if top_k is None:
        if weight is not None:
            raise ERAError(f"{names[1]} needs {names[0]} (how many candidates to re-rank)")
        return None
    try:
        return Rerank(top_k, DEFAULT_WEIGHT if weight is None else weight)
    except ERAError as err:
        raise ERAError(f"{names[0]} / {names[1]}: {err}") from None


__all__ = ["DEFAULT_TOP_K", "DEFAULT_WEIGHT", "Rerank", "add_rerank_arguments", "check_supported",
           "rerank_from_arguments"]
