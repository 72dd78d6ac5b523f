"""Negative mining for stage 2 (reference semantics, megagonlabs/ERA ``label_training.py``).

For one query with positive ``p``, the *excluded* documents are every document judged for the
query (any score, the positive included): a negative is never a judged document.

* ``random``: ``num`` documents drawn from the non-excluded ones.
* ``naive_topk``: the teacher's ``num`` best non-excluded documents (backfilled at random).
* ``topk_percpos`` (reference default): the teacher's top ``teacher_top_k`` non-excluded
  documents, keep those scoring ``< margin x score(p)``, take the first ``2 num``; the hardest
  of them plus ``num - 1`` drawn from the other ``2 num - 1``, backfilled at random.

The random draws use a ``random.Random`` exactly like the reference (``rng.choice`` of the
positive, then ``rng.sample`` over the candidate lists in corpus order); the "non-excluded
documents" population is a lazy :class:`Complement` so a 1M-document corpus is never turned
into a Python list per query.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import Iterable

import numpy as np
import torch

#: Score-matrix block (float32 entries, 64 MiB) when ranking a corpus with the teacher.
SCORE_BLOCK_ENTRIES = 1 << 24
#: Corpus rows read (and normalised) at a time when ranking.
CORPUS_CHUNK_ROWS = 65536


class Complement(Sequence):
    """``range(n)`` without the ``excluded`` values, indexable in O(log e) (a ``random.sample`` population).

    Example:
        >>> c = Complement(6, [1, 4])
        >>> list(c), len(c), c[2]
        ([0, 2, 3, 5], 4, 3)
    """

    def __init__(self, n: int, excluded: Iterable[int]) -> None:
        ex = sorted({int(e) for e in excluded if 0 <= int(e) < n})
        self.n = n
        self._ex = ex
        self._gap = [e - j for j, e in enumerate(ex)]  # non-excluded values below ex[j]

    def __len__(self) -> int:
        return self.n - len(self._ex)

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]  # type: ignore[return-value]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return i + bisect.bisect_right(self._gap, i)


def rank_candidates(teacher: np.ndarray | torch.Tensor, corpus: np.ndarray, excluded: Sequence[Sequence[int]],
                    top_k: int, device: str | torch.device = "cpu",
                    chunk_rows: int = CORPUS_CHUNK_ROWS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, the teacher's best ``top_k`` non-excluded documents: ``(indices, scores)``, best first.

    Cosine scores (``teacher`` and ``corpus`` rows are L2-normalised here). The corpus (e.g. a
    memory-mapped cache entry) is read once, in chunks of ``chunk_rows`` rows, while a running
    top-k per query is kept, so memory stays at one chunk plus ``n_queries x top_k`` entries;
    excluded documents never enter the ranking.
    """
    t = torch.from_numpy(np.array(teacher, dtype=np.float32)).to(device)
    t.div_(t.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    n_q, n_docs = t.shape[0], corpus.shape[0]
    k = min(int(top_k), n_docs)
    ex_rows = np.concatenate([np.full(len(e), i, dtype=np.int64) for i, e in enumerate(excluded)] or [np.zeros(0, np.int64)])
    ex_cols = np.concatenate([np.asarray(e, dtype=np.int64) for e in excluded] or [np.zeros(0, np.int64)])
    best_s = torch.full((n_q, 0), float("-inf"), device=device)
    best_i = torch.zeros((n_q, 0), dtype=torch.long, device=device)
    for c0 in range(0, n_docs, chunk_rows):
        c1 = min(n_docs, c0 + chunk_rows)
        d = torch.from_numpy(np.array(corpus[c0:c1], dtype=np.float32)).to(device)
        d.div_(d.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        sel = (ex_cols >= c0) & (ex_cols < c1)
        r_all = torch.as_tensor(ex_rows[sel], device=device)
        c_all = torch.as_tensor(ex_cols[sel] - c0, device=device)
        rows = max(1, SCORE_BLOCK_ENTRIES // (c1 - c0))
        new_s, new_i = [], []
        for q0 in range(0, n_q, rows):
            q1 = min(n_q, q0 + rows)
            block = t[q0:q1] @ d.T
            in_block = (r_all >= q0) & (r_all < q1)
            block[r_all[in_block] - q0, c_all[in_block]] = float("-inf")
            s_, i_ = torch.topk(block, min(k, c1 - c0), dim=1, sorted=False)
            new_s.append(s_)
            new_i.append(i_ + c0)
        merged_s = torch.cat([best_s, torch.cat(new_s)], dim=1)
        merged_i = torch.cat([best_i, torch.cat(new_i)], dim=1)
        best_s, pos = torch.topk(merged_s, min(k, merged_s.shape[1]), dim=1, sorted=True)
        best_i = torch.gather(merged_i, 1, pos)
    scores, idx = best_s.cpu().numpy(), best_i.cpu().numpy()
    out = []
    for i in range(n_q):
        keep = np.isfinite(scores[i])
        out.append((idx[i][keep], scores[i][keep]))
    return out


def teacher_score(teacher_row: np.ndarray, doc_row: np.ndarray) -> float:
    """Cosine of one teacher query and one document."""
    t = np.asarray(teacher_row, dtype=np.float64)
    d = np.asarray(doc_row, dtype=np.float64)
    return float(t @ d / max(np.linalg.norm(t) * np.linalg.norm(d), 1e-12))


def hard_candidates(strategy: str, ranked: np.ndarray, ranked_scores: np.ndarray, positive_score: float,
                    num: int, margin: float) -> list[int]:
    """The teacher candidates a pair draws its negatives from (fixed for the run).

    ``topk_percpos``: the first ``2 num`` ranked documents scoring ``< margin x positive_score``;
    ``naive_topk``: the first ``num``; ``random``: none.
    """
    if strategy == "topk_percpos":
        keep = ranked[ranked_scores < positive_score * margin]
        return [int(i) for i in keep[: 2 * num]]
    if strategy == "naive_topk":
        return [int(i) for i in ranked[:num]]
    return []


def draw_negatives(strategy: str, rng: random.Random, n_docs: int, excluded: Sequence[int], candidates: list[int],
                   num: int) -> list[int] | None:
    """Draw ``num`` negatives as the reference does; None when the corpus cannot supply them.

    ``corpus`` draws none: the loss then contrasts with every unjudged document of the task.
    """
    if strategy == "corpus":
        return []
    available = Complement(n_docs, excluded)
    if len(available) < num:
        return None
    if strategy == "random":
        return rng.sample(available, num)
    if strategy == "naive_topk":
        selected = list(candidates[:num])
        remaining = Complement(n_docs, [*excluded, *selected])
        needed = num - len(selected)
        if len(remaining) < needed:
            return None
        if needed > 0:
            selected.extend(rng.sample(remaining, needed))
        return selected
    # topk_percpos
    if not candidates:
        return rng.sample(available, num)
    selected = [candidates[0]]
    remaining_hard = candidates[1:]
    needed = num - 1
    if needed > 0 and remaining_hard:
        count = min(needed, len(remaining_hard))
        selected.extend(remaining_hard if count == len(remaining_hard) else rng.sample(remaining_hard, count))
    needed = num - len(selected)
    if needed <= 0:
        return selected
    easy = Complement(n_docs, [*excluded, *selected])
    if len(easy) < needed:
        return None
    selected.extend(rng.sample(easy, needed))
    return selected
