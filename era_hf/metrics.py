"""Information-retrieval metrics, vectorised with numpy.

All metrics are computed per query from a *gain matrix* of shape
``(n_queries, depth)`` whose entry ``[i, r]`` is the graded qrel score of the
document that query ``i`` ranked at position ``r`` (0 when unjudged or past the
end of a short list).  Every metric is then a handful of cumulative sums over
that matrix, so there is no per-query Python loop in the metric maths.

Definitions (they agree with ``trec_eval`` / ``pytrec_eval`` to 1e-6; the test
suite checks this on real runs):

* ``ndcg@k`` -- linear graded gain (gain = qrel score) with discount
  ``1 / log2(rank + 1)``; the ideal DCG ranks the query's judged scores in
  decreasing order (``trec_eval`` ``ndcg_cut.k``).
* ``recall@k`` -- relevant documents (score > 0) in the top ``k`` divided by the
  number of relevant documents of the query (``recall.k``).
* ``mrr@100`` -- reciprocal rank of the first relevant document within the top
  100, 0 when there is none (``recip_rank`` on a top-100 run).
* ``map@100`` -- sum of the precision at each relevant rank within the top 100,
  divided by the number of relevant documents (``map_cut.100``).

Example::

    >>> from era_hf.metrics import retrieval_metrics, mean_metrics
    >>> per_query = retrieval_metrics(
    ...     ["q1", "q2"],
    ...     [["d1", "d2", "d3"], ["d9", "d4"]],
    ...     {"q1": {"d2": 1}, "q2": {"d4": 2, "d5": 1}},
    ...     ks=(1, 5),
    ... )
    >>> per_query["mrr@100"].tolist()
    [0.5, 0.5]
    >>> round(mean_metrics(per_query)["recall@5"], 4)
    0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from era_hf.errors import ERAError

__all__ = [
    "DEFAULT_KS",
    "METRIC_DEPTH",
    "METRIC_MODULE_PATH",
    "METRIC_NAMES",
    "aggregate_suite",
    "mean_metrics",
    "metric_names",
    "rank_from_scores",
    "retrieval_metrics",
]

#: Cut-offs reported for ``ndcg@k`` and ``recall@k`` by default.
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 100)

#: Fixed cut-off of ``mrr@100`` and ``map@100``.
METRIC_DEPTH = 100

#: Local path of the ``evaluate`` metric module wrapping these functions; pass
#: it to ``evaluate.load`` (works offline, nothing is fetched from the Hub).
METRIC_MODULE_PATH: str = str(Path(__file__).resolve().parent / "metrics_module" / "era_retrieval")


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Return the ordered metric names that :func:`retrieval_metrics` produces for ``ks``.

    Example::

        >>> metric_names((1, 10))
        ['ndcg@1', 'ndcg@10', 'recall@1', 'recall@10', 'mrr@100', 'map@100']
    """
    ks = _check_ks(ks)
    return [f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks] + [f"mrr@{METRIC_DEPTH}", f"map@{METRIC_DEPTH}"]


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = list(ks)
    try:
        values = tuple(int(k) for k in ks)
    except (TypeError, ValueError):
        raise ERAError(f"ks must be a sequence of positive integers, got {ks!r}") from None
    if not values or any(k < 1 for k in values) or any(int(k) != k for k in ks):
        raise ERAError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    # Sorted and de-duplicated so that names come out in a stable, readable order.
    return tuple(sorted(set(values)))


#: Names produced with the default cut-offs, in report order.
METRIC_NAMES: list[str] = metric_names(DEFAULT_KS)


def _gain_matrices(
    query_ids: Sequence[str],
    ranked_doc_ids: Sequence[Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    depth: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the run gain matrix, the ideal gain matrix and the relevant counts.

    Negative qrel scores (some collections mark "judged non-relevant" that
    way) count as gain 0, as in trec_eval.
    """
    n = len(query_ids)
    gains = np.zeros((n, depth), dtype=np.float64)
    positives: list[list[float]] = []
    for i, (qid, ranking) in enumerate(zip(query_ids, ranked_doc_ids)):
        judged = qrels.get(qid)
        if judged is None:
            raise ERAError(f"query {qid!r} has no qrels; evaluate only over judged queries")
        pos = [float(s) for s in judged.values() if s > 0]
        if not pos:
            raise ERAError(
                f"query {qid!r} has no relevant document (no qrel score > 0); evaluate only over judged queries"
            )
        positives.append(pos)
        if isinstance(ranking, str):
            raise ERAError(f"ranked_doc_ids for query {qid!r} must be a list of doc ids, got a string")
        top = list(ranking[:depth])
        if len(set(top)) != len(top):
            # A duplicated id would be credited twice and push nDCG/recall above 1.
            raise ERAError(f"ranked_doc_ids for query {qid!r} contains a duplicated doc id")
        row = [judged.get(doc, 0) for doc in top]
        gains[i, : len(row)] = row
    np.maximum(gains, 0.0, out=gains)

    n_rel = np.array([len(p) for p in positives], dtype=np.float64)
    width = max(depth, int(n_rel.max()) if n else 0)
    ideal = np.zeros((n, width), dtype=np.float64)
    for i, pos in enumerate(positives):
        ideal[i, : len(pos)] = pos
    # Sort every row in decreasing order at once; keep only the ranks we score.
    ideal = -np.sort(-ideal, axis=1)[:, :depth]
    return gains, ideal, n_rel


def retrieval_metrics(
    query_ids: Sequence[str],
    ranked_doc_ids: Sequence[Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, np.ndarray]:
    """Compute per-query nDCG@k, Recall@k, MRR@100 and MAP@100.

    Args:
        query_ids: The evaluated queries, in the order of ``ranked_doc_ids``.
            Every one must have at least one qrel with score > 0.
        ranked_doc_ids: For each query, its retrieved doc ids in rank order
            (best first).  Lists may be shorter than the largest cut-off (the
            missing ranks count as non-relevant); ranks beyond
            ``max(max(ks), 100)`` are ignored.
        qrels: ``query_id -> {doc_id: graded score}``; a score > 0 means
            relevant, its value is the nDCG gain.  Unjudged docs score 0.
        ks: Cut-offs for ``ndcg@k`` and ``recall@k``.

    Returns:
        ``{metric_name: float64 array of shape (len(query_ids),)}`` with the
        names of :func:`metric_names` (``METRIC_NAMES`` for the default ``ks``),
        values in query order.

    Raises:
        ERAError: if the inputs have different lengths, a query has no
            relevant qrel (the message names the query id), a ranked list
            repeats a doc id, or ``ks`` is invalid.

    Example::

        >>> m = retrieval_metrics(["q"], [["a", "b", "c"]], {"q": {"b": 2, "c": 1, "z": 1}})
        >>> # DCG@5 = 0/1 + 2/log2(3) + 1/log2(4) = 1.7619; ideal = 2 + 1/log2(3) + 1/2 = 3.1309
        >>> round(float(m["ndcg@5"][0]), 4), round(float(m["recall@5"][0]), 4), float(m["mrr@100"][0])
        (0.5627, 0.6667, 0.5)
    """
    ks = _check_ks(ks)
    if len(query_ids) != len(ranked_doc_ids):
        raise ERAError(
            f"query_ids has {len(query_ids)} entries but ranked_doc_ids has {len(ranked_doc_ids)}; "
            "give one ranked list per query"
        )
    if len(query_ids) == 0:
        raise ERAError("query_ids is empty; there is nothing to evaluate")
    depth = max(max(ks), METRIC_DEPTH)
    gains, ideal, n_rel = _gain_matrices(query_ids, ranked_doc_ids, qrels, depth)

    # 1/log2(rank + 1) for 1-based ranks.
    discount = 1.0 / np.log2(np.arange(2, depth + 2, dtype=np.float64))
    dcg = np.cumsum(gains * discount, axis=1)
    idcg = np.cumsum(ideal * discount, axis=1)  # > 0 from rank 1 on: every query has a positive
    relevant = gains > 0
    rel_cum = np.cumsum(relevant, axis=1, dtype=np.float64)

    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"ndcg@{k}"] = dcg[:, k - 1] / idcg[:, k - 1]
    for k in ks:
        out[f"recall@{k}"] = rel_cum[:, k - 1] / n_rel

    rel_top = relevant[:, :METRIC_DEPTH]
    first = np.argmax(rel_top, axis=1)  # index of the first True (0 when none)
    out[f"mrr@{METRIC_DEPTH}"] = np.where(rel_top.any(axis=1), 1.0 / (first + 1.0), 0.0)

    ranks = np.arange(1, METRIC_DEPTH + 1, dtype=np.float64)
    precision = rel_cum[:, :METRIC_DEPTH] / ranks
    out[f"map@{METRIC_DEPTH}"] = (precision * rel_top).sum(axis=1) / n_rel
    return out


def mean_metrics(per_query: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Average per-query metrics over queries (macro over queries).

    Example::

        >>> mean_metrics({"ndcg@10": np.array([1.0, 0.5]), "mrr@100": np.array([1.0, 0.0])})
        {'ndcg@10': 0.75, 'mrr@100': 0.5}
    """
    out: dict[str, float] = {}
    for name, values in per_query.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            raise ERAError(f"metric {name!r} has no per-query values to average")
        out[name] = float(arr.mean())
    return out


def aggregate_suite(
    per_task: Mapping[str, Mapping[str, float]],
    domains: Mapping[str, str],
) -> dict[str, dict]:
    """Aggregate per-task mean metrics into suite-level summaries.

    Every task weighs the same, whatever its number of queries.

    Args:
        per_task: ``task_name -> {metric: mean over the task's queries}``
            (e.g. the output of :func:`mean_metrics`).
        domains: ``task_name -> domain``; must cover every task.

    Returns:
        ``{"macro": {metric: mean over tasks}, "per_domain": {domain: {metric:
        mean over that domain's tasks}}}``.  Only metrics that every task
        (resp. every task of the domain) reports are averaged; metric order
        follows the first task, domains are sorted.

    Example::

        >>> aggregate_suite(
        ...     {"a": {"ndcg@10": 0.5}, "b": {"ndcg@10": 1.0}, "c": {"ndcg@10": 0.0}},
        ...     {"a": "law", "b": "law", "c": "code"},
        ... )
        {'macro': {'ndcg@10': 0.5}, 'per_domain': {'code': {'ndcg@10': 0.0}, 'law': {'ndcg@10': 0.75}}}
    """
    if not per_task:
        raise ERAError("per_task is empty; there is no task to aggregate")
    missing = [task for task in per_task if task not in domains]
    if missing:
        raise ERAError(f"no domain given for task(s) {missing}")

    def _macro(tasks: list[str]) -> dict[str, float]:
        names = [m for m in per_task[tasks[0]] if all(m in per_task[t] for t in tasks)]
        return {m: float(np.mean([float(per_task[t][m]) for t in tasks])) for m in names}

    by_domain: dict[str, list[str]] = {}
    for task in per_task:
        by_domain.setdefault(domains[task], []).append(task)
    return {
        "macro": _macro(list(per_task)),
        "per_domain": {d: _macro(tasks) for d, tasks in sorted(by_domain.items())},
    }


def rank_from_scores(scores: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[str]]:
    """Return the top-``k`` doc ids of every row of a query-by-document score matrix.

    Uses ``argpartition`` (linear time) to find the top ``k`` and sorts only
    those.  Ties are broken deterministically: among equal scores the document
    with the lower column index ranks first (also at the top-``k`` boundary).

    Args:
        scores: ``(n_queries, n_docs)`` array, higher = better; no NaN.
        doc_ids: ``n_docs`` ids, one per column.
        k: Number of documents per query (capped at ``n_docs``).

    Returns:
        One ranked list of doc ids per row, best first.

    Example::

        >>> rank_from_scores(np.array([[0.1, 0.9, 0.5, 0.9]]), ["a", "b", "c", "d"], k=3)
        [['b', 'd', 'c']]
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ERAError(f"scores must be a 2-D (n_queries, n_docs) array, got shape {scores.shape}")
    n_q, n_docs = scores.shape
    if n_docs != len(doc_ids):
        raise ERAError(f"scores has {n_docs} columns but doc_ids has {len(doc_ids)} entries")
    if int(k) != k or k < 1:
        raise ERAError(f"k must be a positive integer, got {k!r}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)  # negating unsigned ints would wrap around
    if np.isnan(scores).any():
        raise ERAError("scores contains NaN")
    k = min(int(k), n_docs)
    if n_q == 0 or k == 0:
        return [[] for _ in range(n_q)]
    ids = np.asarray(doc_ids, dtype=object)

    neg = -scores  # ascending order of `neg` = descending score
    if k < n_docs:
        top = np.argpartition(neg, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrarily among docs tied with the k-th score;
        # redo the (rare) rows where such a tie straddles the boundary.
        kth = np.take_along_axis(neg, top, axis=1).max(axis=1, keepdims=True)
        ambiguous = np.flatnonzero((neg <= kth).sum(axis=1) > k)
        for row in ambiguous:
            top[row] = np.argsort(neg[row], kind="stable")[:k]
        # Sorting the candidate indices first makes the stable sort below
        # break ties by column index.
        top.sort(axis=1)
    else:
        top = np.broadcast_to(np.arange(n_docs), (n_q, n_docs)).copy()
    order = np.argsort(np.take_along_axis(neg, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return ids[top].tolist()
