"""Searching a document index with an ERA model, in one call: the adapted queries, hybrid search when the model was
trained for it, and optional re-ranking with the query encoder on both sides (:mod:`era_hf.rerank`).

Example:
    >>> from era_hf import ERAModel
    >>> from era_hf.index import DocumentIndex
    >>> from era_hf.rerank import Rerank
    >>> from era_hf.search import Searcher
    >>> model = ERAModel.from_pretrained("runs/adi")  # doctest: +SKIP
    >>> searcher = Searcher(model, DocumentIndex.load("runs/adi-index"), rerank=Rerank(top_k=50))  # doctest: +SKIP
    >>> scores, ids = searcher.search(["what makes lift?"], k=10)  # doctest: +SKIP
    >>> # or pick re-ranking's weight for this index on judged queries the adapter was not trained on
    >>> record = searcher.calibrate(["what makes lift?"], [["doc-12", "doc-40"]])  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ERAError


class Searcher:
    """Search ``index`` with ``model`` (an :class:`~era_hf.ERAModel` with its encoders attached).

    Args:
        model: the adapter; its ``config.lexical_weight`` > 0 makes the first search hybrid (BM25 of the query text
            over the texts the index stores), as it was picked in training.
        index: a :class:`~era_hf.index.DocumentIndex` built with the model's document encoder.
        rerank: a :class:`~era_hf.rerank.Rerank` to re-rank each query's first ``rerank.top_k`` results with the
            model's query encoder on both sides (None: no re-ranking; :meth:`calibrate` sets one). A document's
            strong vector is computed the first time it is a candidate and kept in memory (at most one per document
            of the index).
        batch_size: encoding batch size.
    """

    def __init__(self, model: Any, index: Any, rerank: Any = None, *, batch_size: int = 32) -> None:
        from .rerank import RerankCalibration, check_supported

        index.check_model(model)
        if isinstance(rerank, RerankCalibration):
            raise ERAError("Searcher takes a Rerank; to pick its weight on judged queries, call "
                           "Searcher.calibrate(queries, relevant, calibration)")
        if rerank is not None:
            check_supported(model.config)
        model._require_encoders()
        self.model, self.index, self.rerank, self.batch_size = model, index, rerank, batch_size
        self.config = model.config
        #: the query encoder's embedding of each document that has been a re-ranking candidate, by index row
        self._strong: dict[int, np.ndarray] = {}
        self._row = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}

    def search(self, queries: Sequence[str], instruction: str | Sequence[str] | None = None,
               k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` documents per query: ``(scores, ids)`` as :meth:`~era_hf.index.DocumentIndex.search` returns
        them (with re-ranking, the fused re-ranking scores; ``k`` may then not exceed ``rerank.top_k``).

        ``instruction``: None (the config's default instruction), one string, or one per query."""
        from .text_encoding import check_texts

        queries = check_texts(queries, "queries", allow_blank=False)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ERAError(f"k must be a positive integer, got {k!r}")
        if self.rerank is not None and k > self.rerank.top_k:
            raise ERAError(f"k={k} is more than the {self.rerank.top_k} candidates re-ranked per query; raise "
                           "rerank top_k or lower k")
        if self.rerank is None:
            return self._first_search(queries, instruction, k)[:2]
        ranked, fused = self.rerank.apply(*self._candidates(queries, instruction, self.rerank.top_k))
        return fused[:, :k], [hits[:k] for hits in ranked]

    def calibrate(self, queries: Sequence[str], relevant: Sequence[Mapping[str, float] | Sequence[str]],
                  instruction: str | Sequence[str] | None = None, calibration: Any = None) -> dict[str, Any]:
        """Pick re-ranking's weight for this index on judged queries, and re-rank with it from now on.

        Args:
            queries: judged queries (not ones the adapter was trained on: its first search fits those).
            relevant: per query, its relevant doc ids (a list) or ``{doc_id: grade}`` (grade > 0 is relevant).
            instruction: as in :meth:`search`.
            calibration: a :class:`~era_hf.rerank.RerankCalibration` (default: ``top_k`` of the current re-ranking,
                else 50, and the default weight grid).

        Returns:
            The record of the pick (:meth:`~era_hf.rerank.RerankCalibration.pick`); ``self.rerank`` is set to it.
        """
        from .metrics import retrieval_metrics
        from .rerank import RerankCalibration, check_supported
        from .text_encoding import check_texts

        check_supported(self.config)
        queries = check_texts(queries, "queries", allow_blank=False)
        if isinstance(relevant, (str, Mapping)) or len(relevant) != len(queries):
            raise ERAError(f"relevant must give one entry per query ({len(queries)}), got "
                           f"{len(relevant) if isinstance(relevant, Sequence) else type(relevant).__name__}")
        qrels = {str(i): dict(r) if isinstance(r, Mapping) else {d: 1 for d in r} for i, r in enumerate(relevant)}
        unknown = sorted({d for r in qrels.values() for d in r} - set(self._row))
        if unknown:
            raise ERAError(f"relevant names doc ids that are not in the index: {unknown[:5]}")
        if calibration is None:
            calibration = RerankCalibration(self.rerank.top_k if self.rerank is not None else 50)
        qids = list(qrels)
        candidates = self._candidates(queries, instruction, calibration.top_k)

        def score(rerank: Any) -> np.ndarray:
            ranked, _ = rerank.apply(*candidates)
            return retrieval_metrics(qids, ranked, qrels, ks=(10,))["ndcg@10"]

        self.rerank, record = calibration.pick(score)
        return record

    def _first_search(self, queries: list[str], instruction: Any, depth: int) -> tuple[np.ndarray, list, np.ndarray]:
        """The index's top ``depth`` per query (hybrid when the model says so) and the raw query vectors."""
        adapted, raw = self.model.encode_queries_with_raw(queries, instruction, self.batch_size)
        scores, ids = self.index.search(adapted, depth, query_texts=queries,
                                        lexical_weight=getattr(self.config, "lexical_weight", 0.0))
        return scores, ids, raw

    def _candidates(self, queries: list[str], instruction: Any, depth: int) -> tuple:
        """What :meth:`~era_hf.rerank.Rerank.apply` takes for the first ``depth`` candidates of each query."""
        scores, ids, raw = self._first_search(queries, instruction, depth)
        rows = sorted({self._row[d] for hits in ids for d in hits})
        self._embed_documents([r for r in rows if r not in self._strong])
        position = {self.index.doc_ids[r]: j for j, r in enumerate(rows)}
        vectors = (np.stack([self._strong[r] for r in rows]) if rows
                   else np.zeros((0, self.config.query_dim), np.float32))
        return ids, scores, raw, vectors, position

    def _embed_documents(self, rows: list[int]) -> None:
        """The query encoder's embeddings of the documents at ``rows`` (their titled texts, at the document side's
        max length, as the benchmark's query-encoder corpus), kept for later searches."""
        from .index import titled
        from .text_encoding import encode_texts

        if not rows:
            return
        cfg = self.config
        texts = titled([self.index.titles[r] for r in rows], [self.index.texts[r] for r in rows])
        with warnings.catch_warnings():  # long documents are truncated, as when the index was built
            warnings.filterwarnings("ignore", message=".*longer than max_length.*")
            vectors = encode_texts(self.model.query_encoder, self.model.query_tokenizer, texts,
                                   pooling=cfg.query_pooling, normalize=cfg.normalize_query_embeddings,
                                   max_length=cfg.document_max_length, batch_size=self.batch_size,
                                   show_progress_bar=False, desc="Encoding candidates").numpy()
        self._strong.update(zip(rows, vectors))


__all__ = ["Searcher"]
