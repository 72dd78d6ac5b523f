"""Evaluate an ERA model or a baseline on retrieval tasks, on the paper's fixed test queries.

Protocol (``docs/era-method.md``, "Evaluation"): exact cosine search over each task's whole
corpus, top 100; nDCG@{1,5,10,20,100}, Recall@k, MRR@100, MAP@100 (:mod:`era_hf.metrics`);
per task the mean over its TEST queries (``task.split(label_ratio, seed).test``), overall
the unweighted mean over tasks, and per domain. Every method is scored on the same test
queries. A failing task fails the run (never silently dropped).

Methods:

* an ERA model: query side = ``model.adapt(query-encoder embeddings of the formatted queries
  [, document-encoder embeddings of the queries when anchored])``, corpus = the document encoder;
* baseline ``doc``: the document encoder on both sides (plain queries): the cheap index as is;
* baseline ``query``: the query encoder on both sides (re-encodes the corpus): upper reference.

All encoder outputs go through the :class:`~era_hf.cache.EmbeddingCache`, so a second run
(or another model on the same encoders) loads no encoder at all.

Example:
    >>> from era_hf.evaluation import evaluate_suite
    >>> from era_hf.task_embeddings import EncoderPair
    >>> from era_hf.tasks import load_suite
    >>> result = evaluate_suite("doc", load_suite("../shared/data/adi"), EncoderPair())  # doctest: +SKIP
    >>> round(result["macro"]["ndcg@10"], 3)  # doctest: +SKIP
    0.5...
"""

from __future__ import annotations

import argparse
import numbers
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from .atomic import sha256_file
from .errors import ERAError
from .rerank import RerankCalibration, add_rerank_arguments, rerank_from_arguments

BASELINES = ("doc", "query", "fusion", "doc+lexical")
#: BM25 weights tried when hybrid search's weight is picked on the labelled non-test queries (``"validation"``).
LEXICAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: What each zero-shot baseline searches with (also the benchmark's method descriptions).
BASELINE_DESCRIPTIONS = {
    "doc": "document encoder on queries and documents (the cheap index as is)",
    "query": "query encoder on queries and documents (corpus re-encoded)",
    "fusion": "sum of the doc and query baselines' cosine scores, equal weights, no tuning (corpus re-encoded: "
              "a second index; the upper reference of score-level fusion)",
    "doc+lexical": "hybrid search without an adapter: the doc baseline's cosines fused with BM25 of the query text "
                   "(z-scored per query), BM25's weight picked on the labelled non-test queries (train + validation "
                   "at the label ratio)",
}
TABLE_COLUMNS = (("nDCG@10", "ndcg@10"), ("MAP@100", "map@100"), ("Recall@100", "recall@100"))
#: Score-matrix block of :func:`search_exact`, in float32 entries (128 MiB).
SEARCH_BLOCK_ENTRIES = 1 << 25


# ---------------------------------------------------------------------- search and scoring
def search_exact(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: Sequence[str], k: int = 100,
                 return_scores: bool = False, *, lexical: np.ndarray | None = None,
                 lexical_weight: float = 0.0) -> list[list[str]] | tuple[list[list[str]], np.ndarray]:
    """Exact cosine search: top-``k`` doc ids per query (ties broken by corpus order).

    Scores are computed in blocks of queries (at most ``SEARCH_BLOCK_ENTRIES`` floats at a time),
    so large corpora do not need a (queries x documents) matrix in memory.
    With ``return_scores=True`` also returns the float32 ``(n, min(k, n_docs))`` cosine scores.
    Hybrid search: with ``lexical_weight > 0`` and ``lexical`` the ``(n, n_docs)`` BM25 scores of the queries'
    texts, documents rank by :func:`~era_hf.lexical.fuse_lexical` (and those are the scores returned).
    """
    from .lexical import fuse_lexical
    from .metrics import rank_from_scores

    q = np.asarray(query_emb, dtype=np.float32)
    d = np.asarray(doc_emb, dtype=np.float32)
    if q.ndim != 2 or d.ndim != 2:
        raise ERAError(f"query and document embeddings must be 2-D, got {q.shape} and {d.shape}")
    if q.shape[1] != d.shape[1]:
        raise ERAError(f"query embeddings are {q.shape[1]}-d but document embeddings are {d.shape[1]}-d; "
                       "queries must be in the document encoder's space")
    if d.shape[0] != len(doc_ids):
        raise ERAError(f"{d.shape[0]} document embeddings for {len(doc_ids)} doc ids")
    if d.shape[0] == 0:
        raise ERAError("the corpus is empty")
    if not (np.isfinite(q).all() and np.isfinite(d).all()):
        raise ERAError("embeddings contain NaN or infinity")
    if lexical_weight and (lexical is None or np.shape(lexical) != (q.shape[0], d.shape[0])):
        raise ERAError(f"hybrid search (lexical_weight {lexical_weight}) needs the BM25 scores of the {q.shape[0]} "
                       f"queries against the {d.shape[0]} documents, got {None if lexical is None else np.shape(lexical)}")
    q_norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = q / np.where(q_norm > 0, q_norm, 1)
    d_norm = np.linalg.norm(d, axis=1)
    d_scale = (1.0 / np.where(d_norm > 0, d_norm, 1)).astype(np.float32)
    kk = min(int(k), d.shape[0])
    rows = max(1, SEARCH_BLOCK_ENTRIES // d.shape[0])
    ranked: list[list[str]] = []
    top_scores = np.zeros((q.shape[0], kk), dtype=np.float32)
    index_of = {doc_id: i for i, doc_id in enumerate(doc_ids)} if return_scores else None
    for start in range(0, q.shape[0], rows):
        scores = (q[start:start + rows] @ d.T) * d_scale
        if lexical_weight:
            scores = fuse_lexical(scores, lexical[start:start + rows], lexical_weight)
        block = rank_from_scores(scores, doc_ids, kk)
        if return_scores:
            cols = np.array([[index_of[x] for x in r] for r in block], dtype=np.int64).reshape(len(block), kk)
            top_scores[start:start + len(block)] = np.take_along_axis(scores, cols, axis=1)
        ranked.extend(block)
    return (ranked, top_scores) if return_scores else ranked


def evaluate_task(task: Any, split: Any, query_emb_test: np.ndarray, doc_emb: np.ndarray, k: int = 100,
                  ks: Sequence[int] | None = None, lexical_weight: float = 0.0, rerank: Any = None,
                  strong: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Score one task on its split's TEST queries.

    Args:
        task: a :class:`~era_hf.tasks.RetrievalTask`.
        split: its :class:`~era_hf.tasks.TaskSplit`; ``query_emb_test`` rows follow ``split.test``.
        query_emb_test: ``(len(split.test), dim)`` query embeddings in the document space.
        doc_emb: ``(n_docs, dim)`` embeddings of ``task.document_texts()`` (corpus order).
        lexical_weight: > 0 for hybrid search: BM25 of the query texts against ``task.document_texts()`` fused
            with the cosines (:func:`~era_hf.lexical.fuse_lexical`).
        rerank, strong: re-ranking (:class:`~era_hf.rerank.Rerank`) and its inputs, the query encoder's embeddings
            of the test queries and of the corpus (:func:`rank_queries`).

    Returns:
        ``{"metrics": {name: mean}, "per_query": {"query_ids": [...], name: [values...]},
        "n_queries": int}`` with the :mod:`era_hf.metrics` names.
    """
    from .metrics import DEFAULT_KS, mean_metrics, retrieval_metrics

    qids = list(split.test)
    if not qids:
        raise ERAError(f"task {task.name!r}: the split has no test queries")
    q = np.asarray(query_emb_test)
    if q.ndim != 2 or q.shape[0] != len(qids):
        raise ERAError(f"task {task.name!r}: got query embeddings of shape {q.shape} for {len(qids)} test queries")
    ranked = rank_queries(task, qids, q, doc_emb, k, lexical_weight=lexical_weight, rerank=rerank, strong=strong)
    per_query = retrieval_metrics(qids, ranked, task.qrels, ks=tuple(ks or DEFAULT_KS))
    return {
        "metrics": mean_metrics(per_query),
        "per_query": {"query_ids": qids, **{name: values.tolist() for name, values in per_query.items()}},
        "n_queries": len(qids),
    }


def rank_queries(task: Any, qids: Sequence[str], query_emb: np.ndarray, doc_emb: np.ndarray, k: int = 100, *,
                 lexical_weight: float = 0.0, rerank: Any = None,
                 strong: tuple[np.ndarray, np.ndarray] | None = None) -> list[list[str]]:
    """The top-``k`` doc ids of ``task``'s corpus for each of ``qids``: exact search (hybrid with
    ``lexical_weight`` > 0), then with ``rerank`` (a :class:`~era_hf.rerank.Rerank`) its first ``rerank.top_k``
    re-ranked, the rest left below in the first search's order. ``strong``: the query encoder's embeddings of the
    queries and of the whole corpus (:func:`strong_views`), needed with ``rerank``."""
    doc_ids = task.document_ids()
    lexical = lexical_scores(task, qids) if lexical_weight else None
    if rerank is None:
        return search_exact(query_emb, doc_emb, doc_ids, k=k, lexical=lexical, lexical_weight=lexical_weight)
    if strong is None:
        raise ERAError("re-ranking needs the query encoder's embeddings of the queries and the corpus")
    ranked, scores = search_exact(query_emb, doc_emb, doc_ids, k=max(k, rerank.top_k), return_scores=True,
                                  lexical=lexical, lexical_weight=lexical_weight)
    return reranked(rerank, ranked, scores, strong, doc_ids, k)


def reranked(rerank: Any, ranked: list[list[str]], scores: np.ndarray, strong: tuple[np.ndarray, np.ndarray],
             doc_ids: Sequence[str], k: int) -> list[list[str]]:
    """The first search's ``ranked`` ids (with their ``scores``, at least ``rerank.top_k`` deep) with their first
    ``rerank.top_k`` re-ranked and the rest below, cut at ``k`` (:func:`rank_queries`)."""
    head, _ = rerank.apply(ranked, scores, strong[0], strong[1], {d: i for i, d in enumerate(doc_ids)})
    return [(top + r[rerank.top_k:])[:k] for top, r in zip(head, ranked)]


def strong_views(method: Any, pair: Any, task: Any, qids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """What re-ranking reads (:func:`rank_queries`): the query encoder's embeddings of ``qids`` (formatted as its
    queries) and of ``task``'s corpus (at the document max length), both through the cache. A LoRA adapter changes
    the query encoder itself, so re-ranking is refused for it (the base encoder is not what the model searches
    with)."""
    from .rerank import check_supported

    check_supported(getattr(method, "config", None))
    return pair.queries(task, qids, side="query"), pair.corpus(task, side="query")


def lexical_scores(task: Any, qids: Sequence[str]) -> np.ndarray:
    """BM25 scores ``(len(qids), n_docs)`` of the queries' texts against ``task.document_texts()`` (hybrid search)."""
    from .lexical import BM25

    return BM25(task.document_texts()).scores(task.query_texts(qids)).numpy()


def pick_lexical_weight(method: Any, tasks: Sequence[Any], pair: Any, label_ratio: float, seed: int,
                        candidates: Sequence[float] = LEXICAL_WEIGHTS) -> tuple[float, dict[str, Any]]:
    """Hybrid search's BM25 weight for ``method``: the candidate with the best macro nDCG@10 on the tasks' labelled
    non-test queries (the split's train + validation queries; never a test query). Returns it and the record."""
    from .metrics import retrieval_metrics
    from .training.alignment import pick_by_validation

    views = []
    for task in tasks:
        split = task.split(label_ratio, seed)
        qids = judged(task, [*split.train, *split.val])
        if qids:
            views.append((task, qids, method.query_embeddings(pair, task, qids), method.corpus_embeddings(pair, task),
                          task.document_ids(), lexical_scores(task, qids)))
    if not views:
        raise ERAError("picking hybrid search's BM25 weight needs labelled non-test queries, but no task has one")

    def score(weight: float) -> list[np.ndarray]:
        return [np.asarray(retrieval_metrics(qids, search_exact(q, d, doc_ids, k=10, lexical=lex,
                                                                lexical_weight=weight), task.qrels, ks=(10,))["ndcg@10"])
                for task, qids, q, d, doc_ids, lex in views]

    weight, record = pick_by_validation(list(candidates), score)
    return weight, {**record, "selected_by": "macro nDCG@10 of the labelled non-test queries",
                    "n_queries": sum(len(v[1]) for v in views)}


def judged(task: Any, qids: Sequence[str]) -> list[str]:
    """Those of ``qids`` that ``task`` judges (:meth:`~era_hf.tasks.RetrievalTask.judged_query_ids`)."""
    keep = set(task.judged_query_ids())
    return [q for q in qids if q in keep]


def calibrate_rerank(calibration: Any, method: Any, pair: Any, task: Any, split: Any,
                     lexical_weight: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """Re-ranking for ``task``: the :class:`~era_hf.rerank.Rerank` that ``calibration`` (a
    :class:`~era_hf.rerank.RerankCalibration`) picks on the split's judged validation queries (the adapter was
    trained on the train queries, which would favour its own order), searched as :func:`rank_queries` searches.
    Returns it and the record of the pick."""
    from .metrics import retrieval_metrics

    qids = judged(task, split.val)
    if not qids:
        raise ERAError(f"task {task.name!r}: re-ranking's weight is calibrated on the split's judged validation "
                       f"queries, but it has none at label ratio {split.label_ratio:g}")
    strong = strong_views(method, pair, task, qids)
    doc_ids = task.document_ids()
    # the first search is the same for every weight: run it once, as rank_queries runs it
    ranked, scores = search_exact(method.query_embeddings(pair, task, qids), method.corpus_embeddings(pair, task),
                                  doc_ids, k=max(10, calibration.top_k), return_scores=True,
                                  lexical=lexical_scores(task, qids) if lexical_weight else None,
                                  lexical_weight=lexical_weight)

    def score(rerank: Any) -> np.ndarray:
        return retrieval_metrics(qids, reranked(rerank, ranked, scores, strong, doc_ids, 10), task.qrels,
                                 ks=(10,))["ndcg@10"]

    return calibration.pick(score)


def task_rerank(rerank: Any, method: Any, pair: Any, task: Any, split: Any,
                lexical_weight: float = 0.0) -> tuple[Any, dict[str, Any] | None]:
    """The :class:`~era_hf.rerank.Rerank` that searches ``task``: ``rerank`` itself, or for a
    :class:`~era_hf.rerank.RerankCalibration` the one :func:`calibrate_rerank` picks on ``split`` (then with the
    record of the pick; else None)."""
    if not isinstance(rerank, RerankCalibration):
        return rerank, None
    if split is None:
        raise ERAError(f"task {task.name!r}: re-ranking calibrated on validation queries needs the task's split")
    return calibrate_rerank(rerank, method, pair, task, split, lexical_weight)


def check_lexical_weight(value: Any, what: str = "lexical_weight") -> float:
    """``value`` as a float if it is a finite number >= 0 (the weight of BM25 in hybrid search), else ERAError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)) or value < 0:
        raise ERAError(f"{what} (the weight of BM25 in hybrid search; 0 = dense search only) must be a finite "
                       f"number >= 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------- methods
class Baseline:
    """A zero-shot baseline: ``doc`` (document encoder on both sides), ``query`` (query encoder on both) or
    ``fusion`` (the sum of those two cosine scores: ``[q_doc, q_query] . [d_doc, d_query]``, so it runs as one
    inner-product search over concatenated embeddings)."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            raise ERAError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
        self.name = name
        #: hybrid search: ``"validation"`` = BM25's weight picked by :func:`pick_lexical_weight`
        self.lexical_weight: float | str = "validation" if name == "doc+lexical" else 0.0

    @property
    def label(self) -> str:
        return f"baseline {self.name}"

    def describe(self) -> dict[str, Any]:
        return {"type": "baseline", "name": self.name, "description": BASELINE_DESCRIPTIONS[self.name]}

    def default_pair(self, cache: Any = None) -> Any:
        from .task_embeddings import EncoderPair

        return EncoderPair(cache=cache)

    def _sides(self) -> tuple[str, ...]:
        return {"doc": ("document",), "query": ("query",), "fusion": ("document", "query"),
                "doc+lexical": ("document",)}[self.name]

    @property
    def encodes_corpus_with_query_encoder(self) -> bool:
        """Whether it needs the corpus in the query encoder's space (a second, expensive index)."""
        return "query" in self._sides()

    def query_embeddings(self, pair: Any, task: Any, qids: Sequence[str]) -> np.ndarray:
        return _joined([pair.queries(task, qids, side=side) for side in self._sides()])

    def corpus_embeddings(self, pair: Any, task: Any) -> np.ndarray:
        return _joined([pair.corpus(task, side=side) for side in self._sides()])


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class ERAMethod:
    """An ERA model evaluated through the cache: the head runs on cached query-encoder embeddings.

    Args:
        model: an :class:`~era_hf.ERAModel` (loaded or in memory), or a directory / Hub id
            (loaded head-only by :func:`load_era_model`: no encoder is loaded on a warm cache).
        revision: Hub revision when ``model`` is an id.
        rerank: a :class:`~era_hf.rerank.Rerank` its evaluation re-ranks with (None: no re-ranking).
    """

    def __init__(self, model: Any, revision: str | None = None, rerank: Any = None) -> None:
        if isinstance(model, (str, os.PathLike)):
            self.ref: str | None = os.fspath(model)
            self.model, self.identity = load_era_model(self.ref, revision)
        else:
            self.ref = getattr(model, "name_or_path", None) or None
            self.model = model
            self.identity = {"model": self.ref, "revision": getattr(model, "hub_commit", None), "in_memory": True}
        self.revision = revision
        self.config = self.model.config
        #: hybrid search's BM25 weight, as the model was saved with (0: dense search only)
        self.lexical_weight = float(getattr(self.config, "lexical_weight", 0.0) or 0.0)
        self.rerank = rerank
        self._full_model: Any = None  # the LoRA model with its encoders, loaded on a cache miss
        #: encoders this method loaded itself (the LoRA query encoder), besides the pair's
        self.models_loaded = 0

    @property
    def label(self) -> str:
        return f"ERA {self.ref or '(in memory)'}"

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {"type": "era", **self.identity, "head_type": cfg.head_type, "anchor": cfg.anchor,
                "lora": bool(cfg.lora), "init": getattr(cfg, "init", None), "recipe": getattr(cfg, "recipe", None),
                "lexical_weight": self.lexical_weight,
                **({"rerank": self.rerank.to_dict()} if self.rerank is not None else {})}

    def default_pair(self, cache: Any = None) -> Any:
        from .task_embeddings import EncoderPair

        return EncoderPair.from_config(self.config, cache=cache)

    def _raw_queries(self, pair: Any, task: Any, qids: Sequence[str]) -> np.ndarray:
        if not self.config.lora:
            return pair.queries(task, qids, side="query")
        # LoRA changes the query encoder itself: key the cache on the adapter weights too.
        formatted = pair.format_queries(task, qids, side="query")
        if self.identity.get("in_memory"):
            self.model._require_encoders()
            return self.model.encode_raw_queries(formatted, batch_size=pair.batch_size).numpy()
        fingerprint = {**pair.query_fingerprint(), "lora_adapter": self.identity.get("lora_sha256")}
        cached = pair.cache.lookup(fingerprint, formatted) if pair.cache is not None else None
        if cached is not None:
            return cached
        if self._full_model is None:
            from .modeling_era import ERAModel

            self._full_model = ERAModel.from_pretrained(self.ref, revision=self.revision)
            self.models_loaded += 1 + int(bool(self.config.anchor))
        array = self._full_model.encode_raw_queries(formatted, batch_size=pair.batch_size).numpy()
        return pair.cache.store(fingerprint, formatted, array) if pair.cache is not None else array

    def query_embeddings(self, pair: Any, task: Any, qids: Sequence[str]) -> np.ndarray:
        import torch

        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()  # dropout off; a model handed over mid-training gets each module's mode back
        try:
            raw = np.array(self._raw_queries(pair, task, qids), dtype=np.float32)
            if raw.ndim == 2 and raw.shape[1] != self.config.query_dim:
                raise ERAError(f"ERA model {self.ref or '(in memory)'}: its config.json says query_dim "
                               f"{self.config.query_dim}, but its query encoder {self.config.query_encoder!r} gives "
                               f"{raw.shape[1]}-d embeddings; the model's config does not match its encoder")
            anchor = None
            if self.config.anchor:
                anchor = np.array(pair.queries(task, qids, side="document"), dtype=np.float32)
            with torch.inference_mode():
                return np.asarray(self.model.adapt(raw, anchor), dtype=np.float32)
        finally:
            for module, mode in modes:
                module.training = mode

    def corpus_embeddings(self, pair: Any, task: Any) -> np.ndarray:
        return pair.corpus(task, side="document")



def load_era_model(ref: str, revision: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load an ERA model's config and head only (no encoder weights), plus its identity record.

    Returns ``(model, identity)``; ``identity`` holds the ref, the resolved Hub commit (or None for a
    directory) and the SHA-256 of the head weights (and of the LoRA adapter, if any).
    """
    from transformers.utils import cached_file

    from .modeling_era import LORA_SUBFOLDER, ERAModel

    class _HeadOnly(ERAModel):
        def attach_encoders(self, *args: Any, **kwargs: Any) -> None:  # encoders come from the cache instead
            return None

    model = _HeadOnly.from_pretrained(ref, revision=revision)
    model.eval()
    identity: dict[str, Any] = {"model": ref, "revision": model.hub_commit}
    try:
        weights = cached_file(ref, "model.safetensors", revision=revision)
    except OSError as err:
        raise ERAError(f"cannot find the head weights of ERA model {ref!r}: {str(err).splitlines()[0]}") from None
    identity["head_sha256"] = sha256_file(weights)
    if model.config.lora:
        try:
            adapter = cached_file(ref, f"{LORA_SUBFOLDER}/adapter_model.safetensors", revision=revision)
        except OSError as err:
            raise ERAError(f"ERA model {ref!r} uses LoRA but its adapter weights cannot be found: "
                           f"{str(err).splitlines()[0]}") from None
        identity["lora_sha256"] = sha256_file(adapter)
    return model, identity


def as_method(method: Any, revision: str | None = None) -> Any:
    """``"doc"`` / ``"query"`` → :class:`Baseline`; an ERAModel, directory or Hub id → :class:`ERAMethod`."""
    if isinstance(method, (Baseline, ERAMethod)):
        return method
    if isinstance(method, str) and method in BASELINES:
        return Baseline(method)
    if isinstance(method, str) and method.startswith("baseline:"):
        return Baseline(method.split(":", 1)[1])
    if isinstance(method, str) and method.lower() in BASELINES:
        raise ERAError(f"unknown baseline {method!r}; baselines: {', '.join(BASELINES)}")
    if isinstance(method, (str, os.PathLike)) or hasattr(method, "adapt"):
        return ERAMethod(method, revision)
    raise ERAError(f"cannot evaluate {type(method).__name__}: pass an ERAModel, a model directory / Hub id, "
                   f"or a baseline name ({', '.join(BASELINES)})")


def check_ranking_depth(k: Any, ks: Sequence[int], what: str) -> None:
    """ERAError unless ``k`` (ranked documents per query) reaches the deepest metric: recall@max(ks), mrr@100 and
    map@100 of a shorter ranking would be silently wrong."""
    from .metrics import METRIC_DEPTH

    depth = max(max(ks), METRIC_DEPTH)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < depth:
        raise ERAError(f"{what} (the ranking depth) must be an integer >= {depth}, the deepest metric's cut-off "
                       f"(recall@{max(ks)}, mrr@{METRIC_DEPTH}, map@{METRIC_DEPTH}); got {k!r}")


# ---------------------------------------------------------------------- suites
def evaluate_suite(method: Any, tasks: Sequence[Any], pair: Any = None, label_ratio: float = 0.2,
                   seed: int = 42, *, k: int = 100, ks: Sequence[int] | None = None, cache: Any = None,
                   log: Any = None, lexical_weight: float | None = None, rerank: Any = None) -> dict[str, Any]:
    """Evaluate one method on tasks: per task, per domain and macro (unweighted over tasks).

    Args:
        method: an ERA model / directory / Hub id, or ``"doc"`` / ``"query"`` (see :func:`as_method`).
        tasks: :class:`~era_hf.tasks.RetrievalTask` objects or task specs (:func:`~era_hf.tasks.load_suite`),
            unique names; one task on its own is taken as a list of one.
        pair: the :class:`~era_hf.task_embeddings.EncoderPair`; default: the model's pair (ERA) or
            the default pair (baselines), using ``cache``.
        cache: an :class:`~era_hf.cache.EmbeddingCache` for the default pair (None = default directory).
        log: a callable taking one progress line (e.g. ``print``); None = silent.
        lexical_weight: hybrid search's BM25 weight (:func:`~era_hf.lexical.fuse_lexical`); None = the method's
            own (an ERA model's ``config.lexical_weight``, 0 for a baseline but ``doc+lexical``), 0 = dense search
            only, ``"validation"`` = picked by :func:`pick_lexical_weight` (recorded in ``lexical_weight_selection``).
        rerank: a :class:`~era_hf.rerank.Rerank` to re-rank each query's first candidates with the query encoder on
            both sides (its embeddings of the corpus are computed and cached once here, where a
            :class:`~era_hf.search.Searcher` embeds only the candidates), or a
            :class:`~era_hf.rerank.RerankCalibration` to pick its weight per task on the split's judged validation
            queries (:func:`calibrate_rerank`; the pick is under ``tasks[name]["rerank_calibration"]``); None = the
            method's own (an :class:`ERAMethod`'s ``rerank``, else none).

    Returns:
        A JSON-ready dict: ``method``, ``encoders`` (ids + resolved revisions + settings),
        ``era_hf_version``, ``label_ratio``, ``seed``, ``tasks`` (per task: domain, source,
        revision, metrics, per-query values, the split's ``to_dict()``), ``per_domain``, ``macro``,
        ``cache`` (hits / misses of this call), ``models_loaded`` (encoders loaded by this call: 0 on a
        warm cache), ``seconds``.
    """
    from . import __version__
    from .metrics import DEFAULT_KS, aggregate_suite

    method = as_method(method)
    if pair is None:
        pair = method.default_pair(cache)
    if isinstance(method, ERAMethod):
        _check_pair_matches(method.config, pair)
    tasks = load_tasks(tasks)
    if not tasks:
        raise ERAError("no tasks to evaluate")
    if ks is not None and (not isinstance(ks, Sequence) or not ks or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and c > 0 for c in ks)):
        raise ERAError(f"ks must be a non-empty list of positive integer cut-offs, e.g. [1, 5, 10]; got {ks!r}")
    ks = tuple(ks or DEFAULT_KS)
    check_ranking_depth(k, ks, "k")
    start = time.perf_counter()
    if lexical_weight is None:
        lexical_weight = getattr(method, "lexical_weight", 0.0)
    lexical_selection = None
    if lexical_weight == "validation":
        lexical_weight, lexical_selection = pick_lexical_weight(method, tasks, pair, label_ratio, seed)
    lexical_weight = check_lexical_weight(lexical_weight)
    if rerank is None:
        rerank = getattr(method, "rerank", None)
    stats0 = dict(pair.cache.stats) if pair.cache is not None else None
    loaded0 = pair.models_loaded + getattr(method, "models_loaded", 0)
    per_task: dict[str, Any] = {}
    for task in tasks:
        t0 = time.perf_counter()
        try:
            split = task.split(label_ratio, seed)
            searched, calibration = task_rerank(rerank, method, pair, task, split, lexical_weight)
            q = method.query_embeddings(pair, task, split.test)
            d = method.corpus_embeddings(pair, task)
            strong = strong_views(method, pair, task, split.test) if searched is not None else None
            result = evaluate_task(task, split, q, d, k=k, ks=ks, lexical_weight=lexical_weight, rerank=searched,
                                   strong=strong)
        except ERAError as err:
            message = str(err)
            raise ERAError(message if f"task {task.name!r}" in message else f"task {task.name!r}: {message}") from None
        seconds = time.perf_counter() - t0
        per_task[task.name] = {
            "domain": task.domain,
            "source": task.source,
            "revision": task.revision,
            "n_documents": int(d.shape[0]),
            "n_queries": result["n_queries"],
            "metrics": result["metrics"],
            "per_query": result["per_query"],
            "split": split.to_dict(),
            **({"rerank": searched.to_dict(), "rerank_calibration": calibration} if calibration else {}),
            "seconds": round(seconds, 3),
        }
        if log is not None:
            log(f"{method.label}{f' + BM25 x {lexical_weight:g}' if lexical_weight else ''}"
                f"{_rerank_label(searched, calibration)} | "
                f"{task.name}: nDCG@10 {result['metrics'].get('ndcg@10', float('nan')):.4f}  "
                f"MAP@100 {result['metrics'].get('map@100', float('nan')):.4f}  "
                f"({result['n_queries']} test queries, {d.shape[0]} docs, {seconds:.1f} s)")
    summary = aggregate_suite({n: r["metrics"] for n, r in per_task.items()}, {t.name: t.domain for t in tasks})
    cache_stats = None
    if pair.cache is not None:
        cache_stats = {key: pair.cache.stats[key] - stats0[key] for key in stats0}
        cache_stats["dir"] = str(pair.cache.root)
    return {
        "era_hf_version": __version__,
        "method": method.describe(),
        "lexical_weight": lexical_weight,
        **({"lexical_weight_selection": lexical_selection} if lexical_selection else {}),
        "rerank": rerank.to_dict() if rerank is not None else None,
        "encoders": pair.describe(),
        "label_ratio": label_ratio,
        "seed": seed,
        "k": k,
        "ks": list(ks),
        "tasks": per_task,
        "per_domain": summary["per_domain"],
        "macro": summary["macro"],
        "n_tasks": len(per_task),
        "cache": cache_stats,
        "models_loaded": pair.models_loaded + getattr(method, "models_loaded", 0) - loaded0,
        "seconds": round(time.perf_counter() - start, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _rerank_label(rerank: Any, calibration: dict[str, Any] | None) -> str:
    if rerank is None:
        return ""
    picked = f" (picked on {calibration['n_queries']} validation queries)" if calibration else ""
    return f" + re-ranking top {rerank.top_k} x {rerank.weight:g}{picked}"


#: The name in ARCHITECTURE.md.
evaluate_model = evaluate_suite


def unseen_tasks(config: Any, tasks: Sequence[Any]) -> list[str]:
    """Names of ``tasks`` that an ERA model was neither trained nor aligned on (none when it records no training).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> unseen_tasks(NS(training={"tasks": ["adi"], "alignment_tasks": ["cisi"]}), [NS(name="cisi"), NS(name="med")])
        ['med']
    """
    training = getattr(config, "training", None) or {}
    seen = set(training.get("tasks") or []) | set(training.get("alignment_tasks") or [])
    return [t.name for t in tasks if seen and t.name not in seen]


def _check_pair_matches(config: Any, pair: Any) -> None:
    """An ERA head only makes sense on the encoders it was trained for."""
    if pair.query_encoder_id != config.query_encoder or pair.document_encoder_id != config.document_encoder:
        raise ERAError(f"the ERA model maps {config.query_encoder!r} into {config.document_encoder!r}, but the "
                       f"encoder pair is {pair.query_encoder_id!r} -> {pair.document_encoder_id!r}")


# ---------------------------------------------------------------------- tables
def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: one block per method with per-task, per-domain and macro rows."""
    lines: list[str] = []
    for res in results:
        m = res["method"]
        enc = res["encoders"]
        if m["type"] == "era":
            title = f"ERA {m.get('model')}" + (f" @ {m['revision'][:12]}" if m.get("revision") else "")
        else:
            used = enc["document_encoder"] if m["name"] in ("doc", "doc+lexical") else enc["query_encoder"]
            title = f"baseline {m['name']}: {used['model_id']}" + (f" @ {used['revision'][:12]}"
                                                                   if used.get("revision") else "")
        if res.get("lexical_weight"):
            title += f" + BM25 x {res['lexical_weight']:g} (hybrid search)"
        rows = [(name, r["domain"], str(r["n_queries"]), r["metrics"]) for name, r in res["tasks"].items()]
        if len(res["tasks"]) > 1:
            rows += [(f"domain: {d}", "", "", mets) for d, mets in res["per_domain"].items()]
            rows.append((f"macro ({res['n_tasks']} tasks)", "", "", res["macro"]))
        header = ("task", "domain", "test q", *[c for c, _ in TABLE_COLUMNS])
        table = [header] + [(a, b, c, *[f"{mets.get(key, float('nan')):.4f}" for _, key in TABLE_COLUMNS])
                            for a, b, c, mets in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines.append(title)
        for j, r in enumerate(table):
            cells = [r[i].ljust(widths[i]) if i < 2 else r[i].rjust(widths[i]) for i in range(len(header))]
            lines.append("  ".join(cells).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------- tasks from the CLI
def load_tasks(specs: Any) -> list[Any]:
    """Tasks from ``--task`` specs (a task directory, a directory of task directories, a Hub id or
    ``builtin:stdlib-code``) or loaded tasks, one or a list; names must be unique across all of them."""
    from .tasks import load_suite

    if isinstance(specs, (str, os.PathLike)) or hasattr(specs, "qrels"):
        specs = [specs]
    tasks: list[Any] = []
    origin: dict[str, str] = {}
    for spec in specs:
        if isinstance(spec, (str, os.PathLike)):
            found, label = load_suite(spec), repr(os.fspath(spec))
        elif hasattr(spec, "qrels"):
            found, label = [spec], "a task object"
        else:
            raise ERAError(f"tasks must be RetrievalTask objects or task specs (paths, Hub ids), got "
                           f"{type(spec).__name__}")
        for task in found:
            if task.name in origin:
                raise ERAError(f"duplicate task name {task.name!r}: from {origin[task.name]} and {label}")
            origin[task.name] = label
            tasks.append(task)
    return tasks


# ---------------------------------------------------------------------- CLI
def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score an ERA model and/or baselines on retrieval tasks (fixed test split)",
        description="Exact cosine search over each task's corpus; nDCG@k, Recall@k, MRR@100, MAP@100 on the "
                    "test queries of the paper's split; per task, per domain and macro. Embeddings are cached.",
    )
    p.add_argument("--task", action="append", required=True, metavar="SPEC",
                   help="task directory, directory of task directories (a suite), Hub id (mair:<Task>, "
                        "BeIR/<name>) or builtin:stdlib-code; repeatable")
    p.add_argument("--model", help="ERA model directory or Hub id")
    p.add_argument("--model-revision", help="Hub revision of --model")
    p.add_argument("--baseline", action="append", choices=BASELINES,
                   help="zero-shot baseline: doc (document encoder on both sides), query (query encoder on both "
                        "sides, corpus re-encoded), fusion (both summed) or doc+lexical (doc in hybrid search with "
                        "BM25, its weight picked on the labelled non-test queries); repeatable; with --model uses "
                        "the model's encoders")
    p.add_argument("--query-encoder", help="query encoder for baselines without --model (default: "
                                           "sentence-transformers/all-mpnet-base-v2)")
    p.add_argument("--document-encoder", help="document encoder for baselines without --model (default: "
                                              "sentence-transformers/all-MiniLM-L6-v2)")
    p.add_argument("--query-format", default="auto",
                   help="query format of the query encoder for baselines without --model (default: auto)")
    p.add_argument("--label-ratio", type=float, default=0.2, help="labelled fraction defining the split (0.2)")
    p.add_argument("--seed", type=int, default=42, help="split seed (42)")
    p.add_argument("--k", type=int, default=100, help="retrieval depth (100)")
    p.add_argument("--lexical-weight", type=float, metavar="W",
                   help="hybrid search for every method: BM25 of the query text fused with the cosines, z-scored "
                        "per query, BM25 weighted W (default: an ERA model's own lexical_weight, 0 for baselines)")
    add_rerank_arguments(p, "each query's", "it embeds the candidates' texts, K strong-encoder passes per query; "
                                            "here the corpus is embedded once and cached", calibrates=True)
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size (32)")
    p.add_argument("--output", help="write the results as JSON here (atomically)")
    p.add_argument("--cache-dir", help="embedding cache directory (default: $ERA_HF_CACHE or "
                                       "~/.cache/era_hf/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--device", help="device for encoders (default: cuda if available, else cpu)")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from . import __version__
    from .atomic import atomic_write_json, check_writable
    from .cache import EmbeddingCache
    from .metrics import DEFAULT_KS
    from .task_embeddings import DEFAULT_DOCUMENT_ENCODER, DEFAULT_QUERY_ENCODER, EncoderPair

    if not args.model and not args.baseline:
        raise ERAError(f"nothing to evaluate: pass --model and/or --baseline {'|'.join(BASELINES)}")
    if args.model and (args.query_encoder or args.document_encoder):
        raise ERAError("--query-encoder/--document-encoder are for baselines without --model; "
                       "an ERA model brings its own encoders")
    check_ranking_depth(args.k, DEFAULT_KS, "--k")
    if args.lexical_weight is not None:
        check_lexical_weight(args.lexical_weight, "--lexical-weight")
    rerank = rerank_from_arguments(args.rerank_top_k, args.rerank_weight)
    if args.output is not None:
        check_writable(args.output, "--output")
    cache: Any = False if args.no_cache else EmbeddingCache(args.cache_dir)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    tasks = load_tasks(args.task)
    log(f"{len(tasks)} task(s): {', '.join(t.name for t in tasks)}")
    methods: list[Any] = []
    if args.model:
        methods.append(ERAMethod(args.model, args.model_revision))
        pair = EncoderPair.from_config(methods[0].config, cache=cache, batch_size=args.batch_size, device=args.device)
        unseen = unseen_tasks(methods[0].config, tasks)
        if unseen:
            log(f"note: the adapter was neither trained nor aligned on {', '.join(unseen)}. For an index it never "
                "saw, align stage 1 on it (era-hf train ... --alignment-tasks TASK: its documents and unlabelled "
                "non-test queries, no labels; the model then searches in hybrid with BM25); in the leave-one-out "
                "benchmark (BENCHMARKS.md) that raised the held-out collections' macro nDCG@10 from 0.515 to 0.547, "
                "no collection below the cheap index")
    else:
        pair = EncoderPair(args.query_encoder or DEFAULT_QUERY_ENCODER,
                           args.document_encoder or DEFAULT_DOCUMENT_ENCODER, query_format=args.query_format,
                           cache=cache, batch_size=args.batch_size, device=args.device)
    methods += [Baseline(b) for b in dict.fromkeys(args.baseline or [])]
    results = [evaluate_suite(m, tasks, pair, label_ratio=args.label_ratio, seed=args.seed, k=args.k, log=log,
                              lexical_weight=args.lexical_weight, rerank=rerank) for m in methods]
    print(format_table(results), end="")
    loaded = sum(r["models_loaded"] for r in results)
    if pair.cache is not None:
        st = pair.cache.stats
        log(f"embedding cache {pair.cache.root}: {st['hits']} hit(s), {st['misses']} miss(es); "
            f"{loaded} encoder(s) loaded")
    if args.output is not None:
        arguments = {key: value for key, value in vars(args).items() if key != "func"}
        atomic_write_json(args.output, {"era_hf_version": __version__, "arguments": arguments, "runs": results})
        log(f"wrote {args.output}")
    return 0
