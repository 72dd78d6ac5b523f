"""Tests for era_hf.metrics and the era_retrieval ``evaluate`` module.

* hand-checked tiny examples (the arithmetic is in the comments);
* agreement with pytrec_eval (trec_eval) to 1e-6 on real BM25 runs over the
  Cranfield (graded) and ADI (binary) collections in ../shared/data (beside the clone);
* hypothesis properties (bounds, perfect ranking, invariance, monotonicity);
* the ``evaluate`` module loaded by local path in a fresh offline process (empty caches) gives the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from era_hf.errors import ERAError
from era_hf.metrics import (
    METRIC_MODULE_PATH,
    METRIC_NAMES,
    aggregate_suite,
    mean_metrics,
    metric_names,
    rank_from_scores,
    retrieval_metrics,
)

from conftest import SHARED_DATA, offline_env

DATA = Path(os.environ.get("ERA_HF_TEST_DATA", SHARED_DATA))  # default: <clone>/../shared/data
KS = (1, 5, 10, 20, 100)


# ---------------------------------------------------------------------------
# hand-checked examples
# ---------------------------------------------------------------------------


def test_metric_names_order():
    assert METRIC_NAMES == [
        "ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "ndcg@100",
        "recall@1", "recall@5", "recall@10", "recall@20", "recall@100",
        "mrr@100", "map@100",
    ]  # fmt: skip
    assert metric_names((10, 3, 10)) == ["ndcg@3", "ndcg@10", "recall@3", "recall@10", "mrr@100", "map@100"]


def test_hand_checked_graded_example():
    # qrels: d1=3, d2=2, d4=1 relevant; d3 judged 0 (not relevant). "x" unjudged.
    # ranking: d3 d2 x d1 d4 -> gains 0 2 0 3 1
    # discounts 1/log2(r+1): 1, 0.6309298, 0.5, 0.4306766, 0.3868528
    # DCG@1 = 0                                   IDCG@1 = 3            -> nDCG@1 = 0
    # DCG@2 = 2*0.6309298 = 1.2618595             IDCG@2 = 3 + 2*0.6309298 = 4.2618595 -> 0.2960819
    # DCG@5 = 1.2618595 + 3*0.4306766 + 0.3868528 = 2.9407420
    # IDCG@5 = 3 + 1.2618595 + 1*0.5 = 4.7618595  -> nDCG@5 = 0.6175617
    # recall: 3 relevant; top1 0 -> 0, top2 1 -> 1/3, top5 3 -> 1
    # MRR: first relevant at rank 2 -> 0.5
    # MAP: relevant at ranks 2, 4, 5: (1/2 + 2/4 + 3/5) / 3 = 1.6 / 3 = 0.5333333
    qrels = {"q": {"d1": 3, "d2": 2, "d3": 0, "d4": 1}}
    m = retrieval_metrics(["q"], [["d3", "d2", "x", "d1", "d4"]], qrels, ks=(1, 2, 5))
    assert list(m) == ["ndcg@1", "ndcg@2", "ndcg@5", "recall@1", "recall@2", "recall@5", "mrr@100", "map@100"]
    expected = {
        "ndcg@1": 0.0,
        "ndcg@2": 0.2960819109658652,
        "ndcg@5": 0.6175616866029846,
        "recall@1": 0.0,
        "recall@2": 1 / 3,
        "recall@5": 1.0,
        "mrr@100": 0.5,
        "map@100": 1.6 / 3,
    }
    for name, value in expected.items():
        assert m[name].shape == (1,) and m[name].dtype == np.float64
        assert m[name][0] == pytest.approx(value, abs=1e-12), name


def test_hand_checked_batch_short_lists_and_depth():
    ranked_101 = [f"n{i}" for i in range(100)] + ["r"]
    qrels = {
        "a": {"r1": 1, "r2": 1},  # ranked list misses both -> all zeros
        "b": {"r": 1},  # relevant only at rank 101, past every cut-off -> all zeros
        "c": {"r": 1},  # relevant at rank 1 of a one-element list -> all ones
        "d": {"r": 1, "s": 1, "t": 1, "u": 1},  # 'r' at rank 3 of a 3-element list
    }
    m = retrieval_metrics(["a", "b", "c", "d"], [["x"], ranked_101, ["r"], ["x", "y", "r"]], qrels)
    assert list(m) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert m[name][0] == 0.0 and m[name][1] == 0.0 and m[name][2] == pytest.approx(1.0), name
    # d: DCG@5 = 1/log2(4) = 0.5; IDCG@5 = 1 + 0.6309298 + 0.5 + 0.4306766 = 2.5616064
    assert m["ndcg@1"][3] == 0.0
    assert m["ndcg@5"][3] == pytest.approx(0.5 / (1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5)))
    assert m["recall@5"][3] == 0.25 and m["recall@1"][3] == 0.0
    assert m["mrr@100"][3] == pytest.approx(1 / 3)
    assert m["map@100"][3] == pytest.approx((1 / 3) / 4)  # precision 1/3 at rank 3, 4 relevant
    assert mean_metrics(m)["recall@5"] == pytest.approx((0 + 0 + 1 + 0.25) / 4)


def test_ideal_dcg_uses_all_judged_positives_beyond_depth():
    # 150 relevant docs: ideal DCG@100 has 100 gains of 1, so a perfect top-100 scores 1.
    qrels = {"q": {f"d{i}": 1 for i in range(150)}}
    m = retrieval_metrics(["q"], [[f"d{i}" for i in range(150)]], qrels)
    assert m["ndcg@100"][0] == pytest.approx(1.0)
    assert m["recall@100"][0] == pytest.approx(100 / 150)
    assert m["map@100"][0] == pytest.approx(100 / 150)  # precision 1 at each of 100 ranks / 150


def test_mean_metrics_and_aggregate_suite():
    assert mean_metrics({"ndcg@10": np.array([1.0, 0.5, 0.0])}) == {"ndcg@10": 0.5}
    per_task = {
        "t1": {"ndcg@10": 0.2, "recall@100": 0.6},
        "t2": {"ndcg@10": 0.4, "recall@100": 1.0},
        "t3": {"ndcg@10": 0.9, "recall@100": 0.8},
    }
    out = aggregate_suite(per_task, {"t1": "law", "t2": "law", "t3": "code"})
    # macro: (0.2+0.4+0.9)/3 = 0.5, (0.6+1.0+0.8)/3 = 0.8; law: 0.3, 0.8; code: 0.9, 0.8
    assert out["macro"] == pytest.approx({"ndcg@10": 0.5, "recall@100": 0.8})
    assert list(out["per_domain"]) == ["code", "law"]
    assert out["per_domain"]["law"] == pytest.approx({"ndcg@10": 0.3, "recall@100": 0.8})
    assert out["per_domain"]["code"] == pytest.approx({"ndcg@10": 0.9, "recall@100": 0.8})
    with pytest.raises(ERAError, match="t3"):
        aggregate_suite(per_task, {"t1": "law", "t2": "law"})


def test_errors_name_the_query():
    with pytest.raises(ERAError, match="'q2'.*no relevant"):
        retrieval_metrics(["q1", "q2"], [["a"], ["a"]], {"q1": {"a": 1}, "q2": {"a": 0, "b": -1}})
    with pytest.raises(ERAError, match="'q9'.*no qrels"):
        retrieval_metrics(["q9"], [["a"]], {"q1": {"a": 1}})
    with pytest.raises(ERAError, match="'q1'.*duplicated"):
        retrieval_metrics(["q1"], [["a", "b", "a"]], {"q1": {"a": 1}})
    with pytest.raises(ERAError, match="ranked_doc_ids"):
        retrieval_metrics(["q1", "q2"], [["a"]], {"q1": {"a": 1}})
    with pytest.raises(ERAError, match="ks"):
        retrieval_metrics(["q1"], [["a"]], {"q1": {"a": 1}}, ks=(0, 5))
    with pytest.raises(ERAError, match="empty"):
        retrieval_metrics([], [], {})


def test_rank_from_scores_ties_and_bounds():
    ids = ["a", "b", "c", "d", "e"]
    # ties at the k boundary (b, c, d all 5): the lower column index wins
    assert rank_from_scores(np.array([[1.0, 5.0, 5.0, 5.0, 0.0]]), ids, k=2) == [["b", "c"]]
    # k larger than the corpus: every doc, ties (a, e) by index
    assert rank_from_scores(np.array([[0, 3, 2, 1, 0]]), ids, k=10) == [["b", "c", "d", "a", "e"]]
    assert rank_from_scores(np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [5, 4, 3, 2, 1]]), ids, k=2) == [
        ["e", "d"],
        ["a", "b"],
    ]
    with pytest.raises(ERAError, match="columns"):
        rank_from_scores(np.zeros((1, 4)), ids, k=2)
    with pytest.raises(ERAError, match="NaN"):
        rank_from_scores(np.array([[np.nan, 1, 2, 3, 4]]), ids, k=2)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda n_q: st.integers(1, 12).flatmap(
            lambda n_d: st.tuples(
                st.lists(st.lists(st.integers(-2, 2), min_size=n_d, max_size=n_d), min_size=n_q, max_size=n_q),
                st.integers(1, n_d + 2),
            )
        )
    )
)
def test_rank_from_scores_matches_full_stable_sort(args):
    rows, k = args
    scores = np.array(rows, dtype=np.float32)
    ids = [f"d{j}" for j in range(scores.shape[1])]
    expected = [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]
    assert rank_from_scores(scores, ids, k) == expected


# ---------------------------------------------------------------------------
# agreement with pytrec_eval on real runs
# ---------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@lru_cache(maxsize=None)
def _bm25_run(name: str, k1: float = 0.9, b: float = 0.4):
    """Deterministic BM25 top-100 run over a BEIR collection (no model needed)."""
    root = DATA / name
    if not (root / "corpus.jsonl").exists():
        pytest.skip(f"test collection {root} not available")
    corpus = _read_jsonl(root / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in _read_jsonl(root / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    qids = [qid for qid in queries if any(s > 0 for s in qrels.get(qid, {}).values())]

    doc_ids = [d["_id"] for d in corpus]
    doc_toks = [_tokens(f"{d['title']} {d['text']}") for d in corpus]
    q_toks = [_tokens(queries[qid]) for qid in qids]
    vocab = {t: i for i, t in enumerate(sorted({t for toks in q_toks for t in toks}))}
    tf = np.zeros((len(doc_ids), len(vocab)))
    for i, toks in enumerate(doc_toks):
        for t, c in Counter(t for t in toks if t in vocab).items():
            tf[i, vocab[t]] = c
    qtf = np.zeros((len(qids), len(vocab)))
    for i, toks in enumerate(q_toks):
        for t, c in Counter(toks).items():
            qtf[i, vocab[t]] = c
    dl = np.array([len(t) for t in doc_toks], dtype=np.float64)
    df = (tf > 0).sum(axis=0)
    idf = np.log(1 + (len(doc_ids) - df + 0.5) / (df + 0.5))
    w = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl[:, None] / dl.mean()))
    scores = qtf @ w.T
    return qids, rank_from_scores(scores, doc_ids, 100), qrels, doc_ids


@pytest.fixture(scope="module", params=["cranfield", "adi"])
def real_run(request):
    return (request.param, *_bm25_run(request.param))


def _assert_matches_trec_eval(qids, ranked, qrels):
    import pytrec_eval

    # Strictly decreasing scores that encode our rank order, so trec_eval's own
    # tie-breaking (by doc id) never comes into play.
    run = {qid: {doc: float(len(docs) - r) for r, doc in enumerate(docs)} for qid, docs in zip(qids, ranked)}
    measures = {"ndcg_cut.1,5,10,20,100", "recall.1,5,10,20,100", "map_cut.100", "recip_rank"}
    trec = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in qids}, measures).evaluate(run)
    ours = retrieval_metrics(qids, ranked, qrels)
    mapping = {f"ndcg@{k}": f"ndcg_cut_{k}" for k in KS}
    mapping |= {f"recall@{k}": f"recall_{k}" for k in KS}
    mapping |= {"mrr@100": "recip_rank", "map@100": "map_cut_100"}
    assert set(mapping) == set(METRIC_NAMES)
    for name, trec_name in mapping.items():
        expected = np.array([trec[qid][trec_name] for qid in qids])
        np.testing.assert_allclose(ours[name], expected, rtol=0, atol=1e-6, err_msg=name)
    return ours


def test_agrees_with_pytrec_eval_bm25(real_run):
    name, qids, ranked, qrels, _ = real_run
    ours = _assert_matches_trec_eval(qids, ranked, qrels)
    means = mean_metrics(ours)
    # The run is a real, non-trivial ranking (README sanity numbers: cranfield
    # nDCG@10 0.323, adi 0.392 for this BM25 setting).
    assert 0.2 < means["ndcg@10"] < 0.6, (name, means["ndcg@10"])


def test_agrees_with_pytrec_eval_shuffled_run(real_run):
    # A weak run (BM25 top-100 with its order scrambled, some lists cut short)
    # exercises low scores, empty top-k and short lists.
    _, qids, ranked, qrels, doc_ids = real_run
    rng = np.random.default_rng(0)
    scrambled = []
    for i, docs in enumerate(ranked):
        docs = list(rng.permutation(docs)) if i % 2 else list(docs)
        scrambled.append(docs[: (100 if i % 3 else 7)])
    _assert_matches_trec_eval(qids, scrambled, qrels)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


@st.composite
def judged_queries(draw):
    """A few queries over a small doc pool, graded qrels (>= 1 positive), a ranked list each."""
    n_docs = draw(st.integers(1, 40))
    docs = [f"d{i}" for i in range(n_docs)]
    unjudged = [f"u{i}" for i in range(draw(st.integers(0, 30)))]
    qids, ranked, qrels = [], [], {}
    for qi in range(draw(st.integers(1, 4))):
        judged = draw(st.lists(st.sampled_from(docs), min_size=1, max_size=n_docs, unique=True))
        scores = draw(st.lists(st.integers(0, 4), min_size=len(judged), max_size=len(judged)))
        scores[0] = max(scores[0], 1)  # at least one positive
        qid = f"q{qi}"
        qrels[qid] = dict(zip(judged, scores))
        pool = draw(st.permutations(docs + unjudged))
        ranked.append(pool[: draw(st.integers(0, len(pool)))])
        qids.append(qid)
    return qids, ranked, qrels


@settings(max_examples=80, deadline=None)
@given(judged_queries())
def test_bounds_monotone_recall_and_batch_independence(case):
    qids, ranked, qrels = case
    m = retrieval_metrics(qids, ranked, qrels)
    for name in METRIC_NAMES:
        assert m[name].shape == (len(qids),)
        assert np.all(m[name] >= 0) and np.all(m[name] <= 1 + 1e-12), name
    recalls = np.stack([m[f"recall@{k}"] for k in KS])
    assert np.all(np.diff(recalls, axis=0) >= 0)
    # Vectorised batch == one query at a time (no leakage between rows).
    for i, qid in enumerate(qids):
        single = retrieval_metrics([qid], [ranked[i]], qrels)
        for name in METRIC_NAMES:
            assert single[name][0] == m[name][i]


@settings(max_examples=60, deadline=None)
@given(judged_queries())
def test_perfect_ranking_scores_one(case):
    qids, _, qrels = case
    perfect = []
    for qid in qids:
        # Positives by decreasing grade, then judged-irrelevant docs.
        perfect.append(sorted(qrels[qid], key=lambda d: -qrels[qid][d]))
    m = retrieval_metrics(qids, perfect, qrels)
    for k in KS:
        np.testing.assert_allclose(m[f"ndcg@{k}"], 1.0, rtol=1e-12)
        n_rel = np.array([sum(s > 0 for s in qrels[q].values()) for q in qids])
        np.testing.assert_allclose(m[f"recall@{k}"], np.minimum(k, n_rel) / n_rel)
    np.testing.assert_allclose(m["mrr@100"], 1.0)
    np.testing.assert_allclose(m["map@100"], 1.0)


@settings(max_examples=60, deadline=None)
@given(judged_queries(), st.randoms(use_true_random=False))
def test_order_of_unjudged_docs_is_irrelevant(case, rnd):
    qids, ranked, qrels = case
    shuffled = []
    for qid, docs in zip(qids, ranked):
        docs = list(docs)
        slots = [r for r, d in enumerate(docs) if d not in qrels[qid]]
        moved = [docs[r] for r in slots]
        rnd.shuffle(moved)
        for r, d in zip(slots, moved):
            docs[r] = d
        shuffled.append(docs)
    a = retrieval_metrics(qids, ranked, qrels)
    b = retrieval_metrics(qids, shuffled, qrels)
    for name in METRIC_NAMES:
        assert np.array_equal(a[name], b[name]), name


# ---------------------------------------------------------------------------
# the evaluate module
# ---------------------------------------------------------------------------


# Run in a fresh interpreter: the offline flags and cache paths are read when evaluate / datasets /
# huggingface_hub are imported, so they are set in the environment before any import.
EVALUATE_OFFLINE_SCRIPT = """
import json, sys, traceback
import evaluate, huggingface_hub.constants as hub
from era_hf.errors import ERAError
from era_hf.metrics import METRIC_MODULE_PATH
cases_path, out_path, cache_dir = sys.argv[1:4]
with open(cases_path) as f:
    cases = json.load(f)
metric = evaluate.load(METRIC_MODULE_PATH, keep_in_memory=True, cache_dir=cache_dir)
results = []
for kwargs in cases:
    if "ks" in kwargs:
        kwargs["ks"] = tuple(kwargs["ks"])
    try:
        got = metric.compute(**kwargs)
    except ERAError as err:
        results.append({"raised": "ERAError", "message": str(err)})
    except Exception as err:
        results.append({"raised": type(err).__qualname__, "message": traceback.format_exc()})
    else:
        results.append({"raised": None, "result": [[name, float(value)] for name, value in got.items()]})
seen = {"hub_offline": hub.HF_HUB_OFFLINE, "evaluate_offline": evaluate.config.HF_EVALUATE_OFFLINE}
with open(out_path, "w") as f:
    json.dump({"seen": seen, "results": results}, f)
"""


def compute_offline(tmp_path: Path, cases: list[dict]) -> list[dict]:
    """``evaluate.load(METRIC_MODULE_PATH).compute(**case)`` for each case, in one offline process whose HF caches
    are empty folders under ``tmp_path``; an ERAError is returned as ``{"raised": "ERAError", "message": ...}``."""
    env = offline_env(tmp_path)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATE_OFFLINE_SCRIPT, str(tmp_path / "cases.json"), str(out),
         str(tmp_path / "evaluate_cache")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads(out.read_text())
    # The variables took effect: the libraries themselves report offline mode.
    assert record["seen"] == {"hub_offline": True, "evaluate_offline": True}, record["seen"]
    return record["results"]


def test_evaluate_module_matches_library(tmp_path):
    qids, ranked, qrels, _ = _bm25_run("cranfield")  # graded qrels
    references = [
        {"query_id": q, "doc_ids": list(qrels[q]), "scores": list(qrels[q].values())} for q in qids
    ]
    full, small, unjudged = compute_offline(
        tmp_path,
        [
            {"predictions": ranked, "references": references},
            {"predictions": [["a", "b"]], "references": [{"query_id": "q", "doc_ids": ["b"], "scores": [1]}],
             "ks": [1, 5]},
            {"predictions": [["a"]], "references": [{"query_id": "q0", "doc_ids": ["a"], "scores": [0]}]},
        ],
    )  # fmt: skip

    assert full["raised"] is None, full["message"]
    got = dict(full["result"])
    want = mean_metrics(retrieval_metrics(qids, ranked, qrels))
    assert list(got) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name

    assert small["raised"] is None, small["message"]
    got = dict(small["result"])
    # b at rank 2: nDCG@5 = 1/log2(3) = 0.6309298, recall@5 = 1, MRR = MAP = 0.5
    assert got == pytest.approx(
        {"ndcg@1": 0.0, "ndcg@5": 1 / math.log2(3), "recall@1": 0.0, "recall@5": 1.0, "mrr@100": 0.5, "map@100": 0.5}
    )
    assert unjudged["raised"] == "ERAError", unjudged
    assert "'q0'" in unjudged["message"], unjudged["message"]
