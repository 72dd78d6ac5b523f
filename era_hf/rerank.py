"""Re-ranking the first search's top candidates with the query encoder on both sides (ours, not the paper).

ERA searches the cheap index with one strong-encoder pass per query. Re-ranking adds ``top_k`` strong-encoder
passes per query, over the texts of the first search's ``top_k`` candidates (the index keeps them): each candidate
gets the z-score of its first-stage score (over the candidates) plus ``weight`` times the z-score of the strong
encoder's cosine between the raw query and the candidate text (:func:`~era_hf.lexical.standardized` per query).
Candidates below ``top_k`` are never rescored, so the cheap index is still never re-encoded, and a document's
strong vector is computed only when it is a candidate.

The defaults (``top_k`` 50, ``weight`` 1) were chosen on judged queries that training never reads
(``benchmarks/transfer_selection.py --protocol in_domain|per_task``; docs/quality.md, "Re-ranking the candidates
with the query encoder on both sides"), not on test queries. ``weight=inf`` is the query encoder's own order of the
candidates (the first search only breaks ties).

How much the query encoder should count differs between collections (on medline it ranks far better than the cheap
index, on vaswani worse), so :class:`RerankCalibration` picks the weight per index: the weight of a small grid with
the best mean nDCG@10 on that index's judged validation queries (:meth:`~era_hf.search.Searcher.calibrate`;
``evaluate_suite(..., rerank=RerankCalibration())`` per task on its split's validation queries). It is an option,
not the recommended re-ranking: on the benchmark's test split it reached the query encoder's own quality on medline,
but on the judged queries training never reads it was below the fixed weight, and over 20 test splits below it on
11 (docs/quality.md, "Calibrating re-ranking's weight per collection").

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
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ERAError

#: Candidates re-ranked per query (strong-encoder passes per query), chosen on never-read judged queries.
DEFAULT_TOP_K = 50
#: The strong encoder's z-scored cosine's weight against the first stage's z-scored score.
DEFAULT_WEIGHT = 1.0
#: The weights :class:`RerankCalibration` tries (inf: the query encoder's own order of the candidates).
WEIGHT_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, math.inf)


def _weight_json(weight: float) -> float | str:
    return "inf" if math.isinf(weight) else float(weight)


@dataclass(frozen=True)
class Rerank:
    """How to re-rank: the first search's ``top_k`` candidates, rescored by ``z(first) + weight * z(strong)``.

    Args:
        top_k: candidates re-ranked per query (each costs one strong-encoder pass the first time it is a candidate).
        weight: the strong encoder's weight (> 0; 1 gives both stages equal weight; ``math.inf``: the strong
            encoder's order, the first stage's score breaking ties).
    """

    top_k: int = DEFAULT_TOP_K
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 2:
            raise ERAError(f"rerank top_k (candidates re-ranked per query) must be an integer >= 2, got "
                           f"{self.top_k!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, numbers.Real) \
                or math.isnan(float(self.weight)) or self.weight <= 0:
            raise ERAError(f"rerank weight (the query encoder's weight against the first search) must be a number "
                           f"> 0 (inf: the query encoder's order), got {self.weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"top_k": int(self.top_k), "weight": _weight_json(self.weight)}

    def fuse(self, first: np.ndarray, strong: np.ndarray) -> np.ndarray:
        """Per row: ``z(first) + weight * z(strong)`` over the row's candidates (``z(strong)`` at ``weight=inf``)."""
        import torch

        from .lexical import fuse_lexical, standardized

        if math.isinf(self.weight):
            return standardized(torch.as_tensor(np.asarray(strong, dtype=np.float32))).numpy()
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
            first = np.asarray(scores[i][:len(candidates)], dtype=np.float32)
            fused = self.fuse(first[None, :], strong[None, :])[0]
            # at weight inf the first search breaks ties; otherwise its order does (a stable sort)
            order = np.lexsort((-first, -fused)) if math.isinf(self.weight) else np.argsort(-fused, kind="stable")
            out_ids.append([candidates[j] for j in order])
            out_scores[i, :len(candidates)] = fused[order]
        return out_ids, out_scores


@dataclass(frozen=True)
class RerankCalibration:
    """Re-ranking whose weight is picked per index: of ``weights``, the one with the best mean nDCG@10 on judged
    queries of that index (ties: the smaller weight), then used as :class:`Rerank` ``(top_k, weight)``.

    The labels must not be ones the adapter was trained on (the first search fits those, which would favour small
    weights): evaluation uses each task's validation queries; :meth:`~era_hf.search.Searcher.calibrate` takes any
    judged queries. With few queries the pick is noisy; the record says how many it rests on.

    Example:
        >>> import numpy as np
        >>> calibration = RerankCalibration(top_k=10, weights=(1.0, 4.0))
        >>> per_query = {1.0: np.array([0.6, 0.6]), 4.0: np.array([0.5, 0.9])}  # nDCG@10 of two judged queries
        >>> rerank, record = calibration.pick(lambda r: per_query[r.weight])
        >>> rerank
        Rerank(top_k=10, weight=4.0)
    """

    top_k: int = DEFAULT_TOP_K
    weights: tuple[float, ...] = WEIGHT_GRID

    def __post_init__(self) -> None:
        if not isinstance(self.weights, tuple) or not self.weights:
            raise ERAError(f"rerank calibration weights must be a non-empty tuple of numbers, got {self.weights!r}")
        for weight in self.weights:
            Rerank(self.top_k, weight)  # each must be a valid re-ranking

    def to_dict(self) -> dict[str, Any]:
        return {"top_k": int(self.top_k), "weight": "validation", "weights": [_weight_json(w) for w in self.weights]}

    def pick(self, score: Callable[[Rerank], np.ndarray]) -> tuple[Rerank, dict[str, Any]]:
        """The :class:`Rerank` with the best mean of ``score(rerank)`` (per-query nDCG@10 of the judged queries)
        and a record: the mean per weight, the weight picked and the number of queries."""
        from .training.alignment import pick_by_validation

        values = {w: np.asarray(score(Rerank(self.top_k, w)), dtype=np.float64) for w in self.weights}
        sizes = {v.size for v in values.values()}
        if 0 in sizes:
            raise ERAError("calibrating re-ranking needs at least one judged query")
        if len(sizes) != 1:
            raise ERAError(f"calibrating re-ranking: the weights were scored on different numbers of queries {sizes}")
        weight, record = pick_by_validation(list(self.weights), lambda w: [values[w]])
        return Rerank(self.top_k, weight), {
            "weight": _weight_json(weight), "top_k": int(self.top_k), "n_queries": sizes.pop(),
            "ndcg@10": record["val_ndcg@10"],  # by str(weight)
            "selected_by": "the best mean nDCG@10 of the judged calibration queries (ties: the smaller weight)"}


def check_supported(config: Any) -> None:
    """Refuse re-ranking for an ERA model (``config``) with LoRA on its query encoder: re-ranking compares documents
    with the base query encoder, which is not what such a model searches with."""
    if getattr(config, "lora", None):
        raise ERAError("re-ranking rescores candidates with the base query encoder; this ERA model fine-tunes its "
                       "query encoder with LoRA, which re-ranking does not support")


def _weight_argument(text: str) -> float | str:
    """``--rerank-weight``: a number, or ``validation`` (:class:`RerankCalibration`)."""
    if text.strip().lower() == "validation":
        return "validation"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'validation', got {text!r}") from None


def add_rerank_arguments(parser: argparse.ArgumentParser, results: str, cost: str, calibrates: bool = False) -> None:
    """``--rerank-top-k`` / ``--rerank-weight`` of a command that searches (``results``: what is re-ranked; ``cost``:
    how the candidates are embedded there; ``calibrates``: the command has judged validation queries, so the weight
    may be ``validation``); read them back with :func:`rerank_from_arguments`."""
    parser.add_argument("--rerank-top-k", type=int, metavar="K",
                        help=f"re-rank {results} first K results with the query encoder on both sides ({cost}); "
                             "off by default")
    calibrated = (", or 'validation': picked per task from " + ", ".join(f"{w:g}" for w in WEIGHT_GRID)
                  + " on its judged validation queries") if calibrates else ""
    parser.add_argument("--rerank-weight", type=_weight_argument if calibrates else float, metavar="W",
                        help=f"the query encoder's weight when re-ranking (default {DEFAULT_WEIGHT:g}; inf: its own "
                             f"order{calibrated}; needs --rerank-top-k)")


def rerank_from_arguments(top_k: int | None, weight: float | str | None,
                          names: tuple[str, str] = ("--rerank-top-k", "--rerank-weight")) -> Rerank | RerankCalibration | None:
    """The :class:`Rerank` of ``--rerank-top-k`` / ``--rerank-weight`` (None without a top k; a
    :class:`RerankCalibration` for the weight ``validation``); ``names``: what the two settings are called where
    they were given, for the error messages (a Space names its variables)."""
    if top_k is None:
        if weight is not None:
            raise ERAError(f"{names[1]} needs {names[0]} (how many candidates to re-rank)")
        return None
    try:
        if weight == "validation":
            return RerankCalibration(top_k)
        return Rerank(top_k, DEFAULT_WEIGHT if weight is None else weight)
    except ERAError as err:
        raise ERAError(f"{names[0]} / {names[1]}: {err}") from None


__all__ = ["DEFAULT_TOP_K", "DEFAULT_WEIGHT", "Rerank", "RerankCalibration", "WEIGHT_GRID", "add_rerank_arguments",
           "check_supported", "rerank_from_arguments"]
