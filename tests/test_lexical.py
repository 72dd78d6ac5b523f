"""BM25 (era_hf.lexical): the lexical teacher signal of stage 1's distillation."""

from __future__ import annotations

import math

import pytest
import torch

from era_hf.lexical import BM25, analyze, standardized, stem

DOCS = ["Wing lift and drag at supersonic speeds", "The drag of a wing in a wind tunnel; drag measured twice",
        "Orbit insertion of a satellite", "", "lift lift lift"]


def okapi(docs: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """The textbook formula, term by term, written apart from the module's sparse products."""
    terms = [analyze(d) for d in docs]
    avg = sum(map(len, terms)) / len(terms)
    out = []
    for doc in terms:
        score = 0.0
        for term in set(analyze(query)):
            df = sum(term in other for other in terms)
            tf = doc.count(term)
            if df and tf:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avg))
        out.append(score)
    return out


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (0.9, 0.4), (2.0, 0.0)])
def test_scores_match_the_okapi_formula(k1, b):
    queries = ["drag of wings", "wing wing drag drag", "satellites in orbit", "the of and", "zebra", ""]
    got = BM25(DOCS, k1=k1, b=b).scores(queries)
    want = torch.tensor([okapi(DOCS, q, k1, b) for q in queries])
    assert got.shape == (len(queries), len(DOCS))
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(got[1], BM25(DOCS, k1=k1, b=b).scores(["wing drag"])[0])  # a repeated term counts once
    assert float(got[3:].abs().sum()) == 0.0  # stop words only, unknown words, nothing: no score
    assert float(got[0].max()) > 0 and int(got[2].argmax()) == 2


def test_many_queries_are_scored_in_blocks_like_one_by_one():
    queries = [f"drag wing lift {i}" if i % 3 else "orbit" for i in range(600)]  # more than one block of 256
    bm25 = BM25(DOCS)
    together = bm25.scores(queries)
    alone = torch.cat([bm25.scores([q]) for q in queries])
    assert torch.allclose(together, alone) and float(together[255:258].abs().sum()) > 0


def test_terms_are_lowercased_words_without_stop_words_and_with_light_stems():
    assert analyze("The Wings of a Café, measured; x 42") == ["wing", "café", "measur", "42"]
    assert [stem(w) for w in ("cats", "studies", "running", "bus", "as")] == ["cat", "study", "runn", "bus", "as"]
    assert BM25([]).scores(["wing"]).shape == (1, 0)


def test_standardized_rows_and_excluded_entries():
    scores = torch.tensor([[3.0, 1.0, 2.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    exclude = torch.tensor([[False, False, False, True], [False] * 4])
    z = standardized(scores, exclude)
    row = torch.tensor([3.0, 1.0, 2.0, 0.0])  # the excluded 10 counts as 0, not as the top of the spread
    assert torch.allclose(z[0], (row - row.mean()) / row.std())
    assert float(z[1].abs().sum()) == 0.0  # a row without spread carries no ranking
