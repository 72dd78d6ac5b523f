"""BM25 over a task's own texts: a lexical teacher signal for stage 1's distillation (ours, not the paper).

Exact term matches catch what both dense encoders blur (rare words, names, codes), and BM25 needs neither a
model nor a label: only the corpus texts, which are indexed anyway. Tokens are lower-cased words with a short
English stop-word list (Lucene's) removed and common suffixes stripped; the query side counts each distinct
term once.

Example:
    >>> bm25 = BM25(["the cat sat on the mat", "dogs chase cats", "stock markets fell"])
    >>> scores = bm25.scores(["a cat"])
    >>> tuple(scores.shape), [round(s, 3) for s in scores[0].tolist()]
    ((1, 3), [0.47, 0.47, 0.0])
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch

#: Lucene's default English stop words (also the BM25 baselines' of Anserini / Pyserini).
STOP_WORDS = frozenset("a an and are as at be but by for if in into is it no not of on or such that the their then "
                       "there these they this to was will with".split())
#: Suffix -> replacement, tried in order; the first one that leaves a stem of at least 3 characters is stripped.
SUFFIXES = (("ations", ""), ("ation", ""), ("ings", ""), ("ing", ""), ("ies", "y"), ("ied", "y"), ("ness", ""),
            ("ments", ""), ("ment", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", ""))
_WORD = re.compile(r"\w+")
#: Queries scored per sparse product (bounds the dense query-term block).
_CHUNK = 256


def stem(word: str) -> str:
    """``word`` without its first matching suffix of :data:`SUFFIXES` (a light stemmer: ``cats`` -> ``cat``)."""
    for suffix, replacement in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    return word


def analyze(text: str) -> list[str]:
    """The terms of ``text``: lower-cased words of 2+ characters, stop words dropped, stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]


class BM25:
    """Okapi BM25 of queries against a fixed list of documents.

    Args:
        documents: the texts to score, in index order.
        k1: term-frequency saturation.
        b: document-length normalisation.
    """

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.vocabulary: dict[str, int] = {}
        rows, cols, counts = [], [], []
        lengths = []
        for row, text in enumerate(documents):
            terms = analyze(text)
            lengths.append(len(terms))
            tf: dict[int, int] = {}
            for term in terms:
                col = self.vocabulary.setdefault(term, len(self.vocabulary))
                tf[col] = tf.get(col, 0) + 1
            rows += [row] * len(tf)
            cols += list(tf)
            counts += list(tf.values())
        self.n_docs = len(documents)
        n_terms = max(1, len(self.vocabulary))
        df = torch.zeros(n_terms).index_add_(0, torch.tensor(cols, dtype=torch.long), torch.ones(len(cols)))
        idf = torch.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))
        length = torch.tensor(lengths, dtype=torch.float32)
        tf = torch.tensor(counts, dtype=torch.float32)
        row_t, col_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        norm = k1 * (1 - b + b * length[row_t] / max(float(length.mean()) if lengths else 0.0, 1e-9))
        weight = tf * (k1 + 1) / (tf + norm) * idf[col_t]
        # (documents x terms): each document's BM25 weight of every term it holds.
        self.weights = torch.sparse_coo_tensor(torch.stack([row_t, col_t]), weight, (self.n_docs, n_terms),
                                               check_invariants=False).coalesce()

    def scores(self, queries: Sequence[str]) -> torch.Tensor:
        """Dense ``(len(queries), n_docs)`` BM25 scores (terms the documents never use score nothing)."""
        out = torch.zeros(len(queries), self.n_docs)
        for start in range(0, len(queries), _CHUNK):
            block = torch.zeros(self.weights.shape[1], min(_CHUNK, len(queries) - start))
            for j, text in enumerate(queries[start:start + _CHUNK]):
                cols = {self.vocabulary[t] for t in analyze(text) if t in self.vocabulary}
                if cols:
                    block[list(cols), j] = 1.0
            out[start:start + block.shape[1]] = torch.sparse.mm(self.weights, block).T
        return out


def standardized(scores: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Each row as z-scores over its documents (a constant row becomes 0); ``exclude`` (same shape, bool) marks
    entries set to 0 first, e.g. a document that is its own query, whose top score would inflate the spread."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    mean = scores.mean(1, keepdim=True)
    std = scores.std(1, keepdim=True) if scores.shape[1] > 1 else torch.ones_like(mean)
    return (scores - mean) / std.clamp_min(1e-9)


def fuse_lexical(dense: Any, lexical: Any, weight: float) -> np.ndarray:
    """Hybrid search scores (ours, not the paper): per query (row), the dense cosines and the BM25 scores as
    z-scores over the same documents (:func:`standardized`), BM25's times ``weight``. Ranks like the cosines alone
    at ``weight=0``; the scale of neither part matters.

    Example:
        >>> fused = fuse_lexical(np.array([[0.9, 0.8, 0.1]]), np.array([[0.0, 3.0, 0.0]]), 1.0)
        >>> [int(i) for i in fused.argsort(axis=1)[0, ::-1]]
        [1, 0, 2]
    """
    d = standardized(torch.as_tensor(np.asarray(dense, dtype=np.float32)))
    if weight:
        d = d + float(weight) * standardized(torch.as_tensor(np.asarray(lexical, dtype=np.float32)))
    return d.numpy()


__all__ = ["BM25", "STOP_WORDS", "analyze", "fuse_lexical", "standardized", "stem"]
