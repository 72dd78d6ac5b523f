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
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .errors import ERAError


class Searcher:
    """Search ``index`` with ``model`` (an :class:`~era_hf.ERAModel` with its encoders attached).

    Args:
        model: the adapter; its ``config.lexical_weight`` > 0 makes the first search hybrid (BM25 of the query text
            over the texts the index stores), as it was picked in training.
        index: a :class:`~era_hf.index.DocumentIndex` built with the model's document encoder.
        rerank: a :class:`~era_hf.rerank.Rerank` to re-rank each query's first ``rerank.top_k`` results with the
            model's query encoder on both sides (None: no re-ranking). A document's strong vector is computed the
            first time it is a candidate and kept in memory (at most one per document of the index).
        batch_size: encoding batch size.
    """

    def __init__(self, model: Any, index: Any, rerank: Any = None, *, batch_size: int = 32) -> None:
        from .rerank import check_supported

        index.check_model(model)
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
        cfg = self.config
        adapted, raw = self.model.encode_queries_with_raw(queries, instruction, self.batch_size)
        depth = k if self.rerank is None else self.rerank.top_k
        scores, ids = self.index.search(adapted, depth, query_texts=queries,
                                        lexical_weight=getattr(cfg, "lexical_weight", 0.0))
        if self.rerank is None:
            return scores, ids
        rows = sorted({self._row[d] for hits in ids for d in hits})
        self._embed_documents([r for r in rows if r not in self._strong])
        position = {self.index.doc_ids[r]: j for j, r in enumerate(rows)}
        vectors = np.stack([self._strong[r] for r in rows]) if rows else np.zeros((0, cfg.query_dim), np.float32)
        ranked, fused = self.rerank.apply(ids, scores, raw, vectors, position)
        return fused[:, :k], [hits[:k] for hits in ranked]

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
