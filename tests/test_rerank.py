"""Re-ranking the first search's top candidates with the query encoder on both sides (era_hf.rerank), in
evaluation (the whole corpus embedded once, through the cache), in the Searcher (only the candidates, at search
time), the command line and the benchmark; and its weight calibrated per index on judged queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import MINILM, adi, cache_dir  # noqa: F401 (fixtures)

from era_hf.errors import ERAError
from era_hf.evaluation import evaluate_suite, rank_queries, search_exact
from era_hf.rerank import Rerank, RerankCalibration

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per row, written apart from the module's torch code (sample standard deviation, as torch.std)."""
    return (x - x.mean(-1, keepdims=True)) / x.std(-1, ddof=1, keepdims=True)


def _unit(n: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------- the fused score
def test_rerank_orders_the_top_candidates_by_the_sum_of_z_scores_and_leaves_the_rest():
    rng = np.random.default_rng(3)
    ids = [f"d{i}" for i in range(8)]
    first = np.sort(rng.normal(size=(2, 8)), axis=1)[:, ::-1].copy()  # best first, as a search returns them
    ranked = [list(ids), list(reversed(ids))]
    queries, docs = _unit(2, seed=1), _unit(8, seed=2)
    row_of = {d: i for i, d in enumerate(ids)}
    out, scores = Rerank(top_k=5, weight=0.7).apply(ranked, first, queries, 3.0 * docs, row_of)
    for i in range(2):
        top = ranked[i][:5]
        strong = np.array([docs[row_of[d]] @ queries[i] for d in top])  # document norms do not matter: cosines
        fused = _zscore(first[i, :5]) + 0.7 * _zscore(strong)
        order = np.argsort(-fused, kind="stable")
        assert out[i] == [top[j] for j in order]
        assert np.allclose(scores[i], fused[order], atol=1e-5)
    # the candidates below top_k are never returned: evaluation puts them back below (rank_queries)
    assert all(len(r) == 5 for r in out)


def test_a_large_weight_is_the_strong_encoders_order_and_fewer_candidates_are_kept():
    ids = ["a", "b", "c"]
    queries, docs = _unit(1, seed=4), _unit(3, seed=5)
    strong = docs @ queries[0]
    out, _ = Rerank(top_k=3, weight=1e6).apply([ids], np.array([[3.0, 2.0, 1.0]]), queries, docs,
                                               {d: i for i, d in enumerate(ids)})
    assert out == [[ids[j] for j in np.argsort(-strong, kind="stable")]]
    # a query with one candidate (a tiny or approximate index) keeps it; top_k larger than the list is fine
    out, scores = Rerank(top_k=4).apply([["a"]], np.array([[0.5, -np.inf, -np.inf, -np.inf]]), queries, docs,
                                        {"a": 0})
    assert out == [["a"]] and scores[0, 0] == pytest.approx(0.5) and np.isneginf(scores[0, 1:]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 1}, "top_k .* must be an integer >= 2, got 1"),
    ({"top_k": 2.5}, "top_k .* must be an integer >= 2"),
    ({"top_k": True}, "top_k .* must be an integer >= 2"),
    ({"weight": 0.0}, "weight .* must be a number > 0 .*, got 0.0"),
    ({"weight": float("nan")}, "weight .* must be a number > 0"),
    ({"weight": -float("inf")}, "weight .* must be a number > 0"),
    ({"weight": "1"}, "weight .* must be a number > 0"),
])
def test_rerank_refuses_bad_settings(kwargs, message):
    with pytest.raises(ERAError, match=message):
        Rerank(**kwargs)


def test_rank_queries_reranks_the_top_k_and_keeps_the_first_search_below(adi):
    from era_hf.task_embeddings import EncoderPair

    pair = EncoderPair(MINILM, MINILM)
    qids = list(adi.split(0.2, 42).test)[:6]
    q, d = pair.queries(adi, qids, side="document"), pair.corpus(adi)
    strong = (_unit(len(qids), 384, seed=7), _unit(d.shape[0], 384, seed=8))  # another "encoder" on both sides
    first = search_exact(q, d, adi.document_ids(), k=30)
    got = rank_queries(adi, qids, q, d, 30, rerank=Rerank(top_k=10, weight=2.0), strong=strong)
    for before, after in zip(first, got):
        assert len(after) == 30 and set(after[:10]) == set(before[:10]) and after[10:] == before[10:]
    assert any(a[:10] != b[:10] for a, b in zip(got, first))  # the other encoder does reorder
    # re-ranking deeper than the cut-off still returns k ids, all from the re-ranked candidates
    deep = rank_queries(adi, qids, q, d, 5, rerank=Rerank(top_k=10, weight=2.0), strong=strong)
    assert [r[:5] for r in got] == deep
    with pytest.raises(ERAError, match="re-ranking needs the query encoder's embeddings"):
        rank_queries(adi, qids, q, d, 5, rerank=Rerank())


def test_an_infinite_weight_is_the_strong_order_with_the_first_search_breaking_ties():
    ids = ["a", "b", "c", "d"]
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    first = np.array([[4.0, 1.0, 3.0, 2.0]])  # b and c tie on the strong side: c is first there
    out, scores = Rerank(top_k=4, weight=float("inf")).apply([ids], first, np.array([[0.0, 1.0]]), docs,
                                                            {d: i for i, d in enumerate(ids)})
    assert out == [["c", "b", "d", "a"]]
    strong = docs @ np.array([0.0, 1.0]) / np.linalg.norm(docs, axis=1)
    np.testing.assert_allclose(scores[0], np.sort(_zscore(strong))[::-1], atol=1e-5)
    assert Rerank(weight=float("inf")).to_dict() == {"top_k": 50, "weight": "inf"}


def test_calibration_picks_the_best_weight_on_the_judged_queries():
    calibration = RerankCalibration(top_k=7, weights=(0.5, 2.0, float("inf")))
    means = {0.5: [0.4, 0.6], 2.0: [0.9, 0.3], float("inf"): [0.7, 0.8]}
    rerank, record = calibration.pick(lambda r: np.array(means[r.weight]))
    assert rerank == Rerank(7, float("inf"))
    assert record["weight"] == "inf" and record["n_queries"] == 2 and record["top_k"] == 7
    assert record["ndcg@10"] == pytest.approx({"0.5": 0.5, "2.0": 0.6, "inf": 0.75})
    tie, _ = calibration.pick(lambda r: np.array([0.5, 0.5]))
    assert tie.weight == 0.5  # ties: the smaller weight
    assert calibration.to_dict() == {"top_k": 7, "weight": "validation", "weights": [0.5, 2.0, "inf"]}
    with pytest.raises(ERAError, match="at least one judged query"):
        calibration.pick(lambda r: np.array([]))
    for kwargs, message in (({"weights": ()}, "non-empty tuple"), ({"weights": [1.0]}, "non-empty tuple"),
                            ({"weights": (1.0, 0.0)}, "weight .* must be a number > 0"),
                            ({"top_k": 1}, "top_k .* must be an integer >= 2")):
        with pytest.raises(ERAError, match=message):
            RerankCalibration(**kwargs)


def test_evaluation_calibrates_each_task_on_its_validation_queries_only(adi, hybrid_model, cache_dir):
    from era_hf.cache import EmbeddingCache
    from era_hf.evaluation import ERAMethod, calibrate_rerank, judged, strong_views
    from era_hf.metrics import retrieval_metrics
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks.splits import TaskSplit

    pair = EncoderPair.from_config(hybrid_model.config, cache=EmbeddingCache(cache_dir))
    method = ERAMethod(hybrid_model, rerank=RerankCalibration(top_k=10, weights=(0.25, 4.0, float("inf"))))
    evaluated = evaluate_suite(method, [adi], pair)
    task = evaluated["tasks"]["adi"]
    split = adi.split(0.2, 42)
    val = judged(adi, split.val)
    assert evaluated["rerank"]["weight"] == "validation" and task["rerank_calibration"]["n_queries"] == len(val) > 0
    # the record is what the weights score on the validation queries, searched as evaluation searches
    q, d = method.query_embeddings(pair, adi, val), method.corpus_embeddings(pair, adi)
    for key, weight in (("0.25", 0.25), ("4.0", 4.0), ("inf", float("inf"))):
        ranked = rank_queries(adi, val, q, d, 10, lexical_weight=0.5, rerank=Rerank(10, weight),
                              strong=strong_views(method, pair, adi, val))
        assert task["rerank_calibration"]["ndcg@10"][key] == pytest.approx(
            float(np.mean(retrieval_metrics(val, ranked, adi.qrels, ks=(10,))["ndcg@10"])))
    picked = task["rerank"]
    scores = task["rerank_calibration"]["ndcg@10"]
    assert scores[str(picked["weight"])] == max(scores.values())
    # the test queries are then searched with the picked weight
    fixed = evaluate_suite(ERAMethod(hybrid_model, rerank=Rerank(10, float(picked["weight"]))), [adi], pair)
    assert task["per_query"] == fixed["tasks"]["adi"]["per_query"]
    empty = TaskSplit(train=split.train, val=[], test=split.test, seed=42, label_ratio=0.2)
    with pytest.raises(ERAError, match="task 'adi': re-ranking's weight is calibrated on the split's judged "
                                       "validation queries, but it has none at label ratio 0.2"):
        calibrate_rerank(method.rerank, method, pair, adi, empty)


def test_the_searcher_calibrates_on_judged_queries(adi, hybrid_model):
    from era_hf.index import DocumentIndex
    from era_hf.metrics import retrieval_metrics
    from era_hf.search import Searcher

    index = DocumentIndex.build(hybrid_model, adi.corpus["_id"], adi.corpus["text"], titles=adi.corpus["title"])
    val = list(adi.split(0.2, 42).val)
    queries = adi.query_texts(val)
    relevant = [{d: g for d, g in adi.qrels[q].items()} for q in val]
    searcher = Searcher(hybrid_model, index)
    calibration = RerankCalibration(top_k=10, weights=(0.5, float("inf")))
    record = searcher.calibrate(queries, relevant, calibration=calibration)
    assert searcher.rerank == Rerank(10, 0.5 if record["weight"] == 0.5 else float("inf"))
    for weight in calibration.weights:  # the record is each weight's mean nDCG@10 as the Searcher searches
        ids = Searcher(hybrid_model, index, Rerank(10, weight)).search(queries, k=10)[1]
        assert record["ndcg@10"][str(weight)] == pytest.approx(
            float(np.mean(retrieval_metrics(val, ids, adi.qrels, ks=(10,))["ndcg@10"])))
    # relevant doc ids as lists; the default calibration keeps the current top_k
    assert searcher.calibrate(queries, [list(r) for r in relevant])["top_k"] == 10
    with pytest.raises(ERAError, match="one entry per query"):
        searcher.calibrate(queries, relevant[:-1])
    with pytest.raises(ERAError, match="not in the index: \\['no-such-doc'\\]"):
        searcher.calibrate(queries[:1], [["no-such-doc"]])
    with pytest.raises(ERAError, match="Searcher.calibrate"):
        Searcher(hybrid_model, index, rerank=RerankCalibration())


# ---------------------------------------------------------------------- the Searcher against evaluation
@pytest.fixture(scope="module")
def hybrid_model():
    """An untrained (random-head) MiniLM -> MiniLM adapter searching in hybrid, so that every part is exercised."""
    from era_hf import ERAModel

    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM)
    model.config.lexical_weight = 0.5
    return model


def test_searcher_reranks_as_evaluation_does(adi, hybrid_model, cache_dir):
    from era_hf.cache import EmbeddingCache
    from era_hf.evaluation import ERAMethod
    from era_hf.index import DocumentIndex
    from era_hf.metrics import retrieval_metrics
    from era_hf.search import Searcher
    from era_hf.task_embeddings import EncoderPair

    rerank = Rerank(top_k=20, weight=1.0)
    pair = EncoderPair.from_config(hybrid_model.config, cache=EmbeddingCache(cache_dir))
    evaluated = evaluate_suite(ERAMethod(hybrid_model, rerank=rerank), [adi], pair)
    assert evaluated["rerank"] == {"top_k": 20, "weight": 1.0} and evaluated["method"]["rerank"]["top_k"] == 20
    first = evaluate_suite(ERAMethod(hybrid_model), [adi], pair)
    assert first["rerank"] is None
    assert evaluated["tasks"]["adi"]["per_query"]["ndcg@10"] != first["tasks"]["adi"]["per_query"]["ndcg@10"]

    index = DocumentIndex.build(pair, adi.corpus["_id"], adi.corpus["text"], titles=adi.corpus["title"])
    searcher = Searcher(hybrid_model, index, rerank=rerank)
    qids = evaluated["tasks"]["adi"]["per_query"]["query_ids"]
    scores, ids = searcher.search(adi.query_texts(qids), instruction=adi.query_instructions(qids), k=10)
    assert scores.shape == (len(qids), 10) and np.all(np.diff(scores, axis=1) <= 1e-6)
    ndcg = retrieval_metrics(qids, ids, adi.qrels, ks=(10,))["ndcg@10"]
    np.testing.assert_allclose(ndcg, evaluated["tasks"]["adi"]["per_query"]["ndcg@10"], atol=1e-6)
    # only candidates were embedded, each once: a second search embeds nothing new
    seen = dict(searcher._strong)
    assert 0 < len(seen) <= min(20 * len(qids), len(index))
    searcher.search(adi.query_texts(qids[:3]), k=5)
    assert searcher._strong.keys() == seen.keys()
    # without re-ranking the Searcher is the model's hybrid search
    plain = Searcher(hybrid_model, index).search(adi.query_texts(qids), instruction=adi.query_instructions(qids),
                                                 k=10)[1]
    np.testing.assert_allclose(retrieval_metrics(qids, plain, adi.qrels, ks=(10,))["ndcg@10"],
                               first["tasks"]["adi"]["per_query"]["ndcg@10"], atol=1e-6)


def test_searcher_refuses_bad_arguments(adi, hybrid_model):
    from era_hf.index import DocumentIndex
    from era_hf.search import Searcher

    rows = adi.corpus.select(range(30))
    index = DocumentIndex.build(hybrid_model, rows["_id"], rows["text"], titles=rows["title"])
    searcher = Searcher(hybrid_model, index, rerank=Rerank(top_k=10))
    with pytest.raises(ERAError, match="k=11 is more than the 10 candidates re-ranked per query"):
        searcher.search(["computer indexing"], k=11)
    for k in (0, 2.0, True):
        with pytest.raises(ERAError, match="k must be a positive integer"):
            searcher.search(["computer indexing"], k=k)
    with pytest.raises(ERAError, match="queries"):
        searcher.search([""], k=3)


def test_lora_models_are_refused_with_a_clear_error(adi, cache_dir):
    from era_hf import ERAModel
    from era_hf.cache import EmbeddingCache
    from era_hf.evaluation import ERAMethod
    from era_hf.index import DocumentIndex
    from era_hf.search import Searcher

    model = ERAModel.from_encoders(MINILM, MINILM, anchor=True, lora=True)
    with pytest.raises(ERAError, match="fine-tunes its query encoder with LoRA"):
        evaluate_suite(ERAMethod(model, rerank=Rerank()), [adi], cache=EmbeddingCache(cache_dir))
    rows = adi.corpus.select(range(5))
    index = DocumentIndex.build(model, rows["_id"], rows["text"])
    with pytest.raises(ERAError, match="fine-tunes its query encoder with LoRA"):
        Searcher(model, index, rerank=Rerank())


# ---------------------------------------------------------------------- command line and benchmark
def test_evaluate_command_line_reranks_and_records_it(shared_data, cache_dir, tmp_path, capsys):
    from era_hf import cli

    out = tmp_path / "res.json"
    argv = ["evaluate", "--task", str(shared_data / "adi"), "--baseline", "doc", "--cache-dir", str(cache_dir),
            "--query-encoder", MINILM, "--document-encoder", MINILM, "--output", str(out)]
    assert cli.main([*argv, "--rerank-top-k", "5", "--rerank-weight", "2"]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["rerank"] == {"top_k": 5, "weight": 2.0}
    assert "re-ranking top 5 x 2" in capsys.readouterr().err
    # MiniLM on both sides re-ranks with the same cosines it searched with: the ranking does not change
    assert cli.main(argv) == 0
    plain = json.loads(out.read_text())["runs"][0]
    assert plain["rerank"] is None
    assert plain["tasks"]["adi"]["per_query"]["ndcg@10"] == pytest.approx(run["tasks"]["adi"]["per_query"]["ndcg@10"])
    assert cli.main([*argv, "--rerank-top-k", "5", "--rerank-weight", "validation"]) == 0
    calibrated = json.loads(out.read_text())["runs"][0]
    assert calibrated["rerank"]["weight"] == "validation"
    assert calibrated["tasks"]["adi"]["rerank_calibration"]["n_queries"] > 0
    assert "picked on" in capsys.readouterr().err


def test_the_benchmark_row_records_rerank_in_its_hash_only():
    from era_hf.benchmark import METHODS, get_method

    row = get_method("rec+rerank")
    assert row.rerank == Rerank() and row.recipe == get_method("era_recommended").recipe
    assert dict(row.overrides) == dict(get_method("era_recommended").overrides)
    assert [m.name for m in METHODS if m.rerank is not None] == ["rec+rerank", "rec+rerank_val"]
    calibrated = get_method("rec+rerank_val")
    assert calibrated.rerank == RerankCalibration() and dict(calibrated.overrides) == dict(row.overrides)


def test_the_benchmark_never_calibrates_on_a_held_out_collection(shared_data, tmp_path, capsys):
    from era_hf import cli

    assert cli.main(["benchmark", "--suite", str(shared_data), "--out", str(tmp_path), "--methods", "rec+rerank_val",
                     "--protocols", "in_domain", "leave_one_out", "--label-ratios", "0.2", "--seeds", "1",
                     "--dry-run"]) == 0
    captured = capsys.readouterr()
    planned = [line for line in (captured.out + captured.err).splitlines() if line.startswith("[dry run]")]
    assert len(planned) == 1 and planned[0].startswith("[dry run] in_domain | ")


def test_the_space_reranks_its_era_column_on_request(adi, hybrid_model):
    from era_hf.index import DocumentIndex
    from era_hf.search import Searcher
    from era_hf.space import SearchService, _status_markdown

    rows = adi.corpus.select(range(40))
    index = DocumentIndex.build(hybrid_model, rows["_id"], rows["text"], titles=rows["title"])
    rerank = Rerank(top_k=8, weight=1.0)
    service = SearchService(hybrid_model, index, rerank=rerank)
    assert service.max_k == 8 and service.describe()["rerank"] == {"top_k": 8, "weight": 1.0}
    query = "computer programs that index documents by their words"
    result = service.search_batch([query], ks=[5])[0]
    scores, ids = Searcher(hybrid_model, index, rerank).search([query], instruction=service.instruction, k=5)
    assert [h["id"] for h in result["era"]["results"]] == ids[0]
    assert [h["score"] for h in result["era"]["results"]] == pytest.approx(scores[0].tolist(), abs=1e-4)
    assert "top 8 candidates" in _status_markdown(result, len(index), 8)
    assert "only the query is encoded" in _status_markdown(result, len(index))
    # k beyond the re-ranked candidates is a message for the user, not a failure
    assert "between 1 and 8" in service.search_batch([query], ks=[9])[0]["error"]
