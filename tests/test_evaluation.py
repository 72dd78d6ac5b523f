"""Evaluation: exact search, per-task scoring on the test split, baselines, ERA models, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from era_hf import evaluation
from era_hf.cache import EmbeddingCache
from era_hf.errors import ERAError
from era_hf.evaluation import evaluate_suite, evaluate_task, format_table, search_exact
from era_hf.metrics import METRIC_NAMES, rank_from_scores, retrieval_metrics

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"


@pytest.fixture(scope="module")
def adi(shared_data):
    from era_hf.tasks import load_task

    return load_task(str(shared_data / "adi"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emb_cache")


@pytest.fixture(scope="module")
def doc_result(adi, cache_dir):
    from era_hf.task_embeddings import EncoderPair

    return evaluate_suite("doc", [adi], EncoderPair(cache=EmbeddingCache(cache_dir)))


def test_search_exact_matches_bruteforce(monkeypatch):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    d = rng.standard_normal((50, 16)).astype(np.float32) * rng.uniform(0.5, 2, (50, 1)).astype(np.float32)
    ids = [f"d{i}" for i in range(50)]
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T
    expected = rank_from_scores(cos, ids, 10)
    monkeypatch.setattr(evaluation, "SEARCH_BLOCK_ENTRIES", 120)  # blocks of 2 queries
    ranked, scores = search_exact(q, d, ids, k=10, return_scores=True)
    assert ranked == expected
    np.testing.assert_allclose(scores, np.sort(cos, axis=1)[:, ::-1][:, :10], atol=1e-5)
    assert len(search_exact(q, d, ids, k=500)[0]) == 50  # k capped at the corpus size
    with pytest.raises(ERAError, match="16-d"):
        search_exact(q[:, :8], d, ids)
    with pytest.raises(ERAError, match="doc ids"):
        search_exact(q, d, ids[:3])


def test_doc_baseline_on_adi_matches_hand_built_run(adi, doc_result, minilm_encoder, cache_dir):
    r = doc_result["tasks"]["adi"]
    split = adi.split(0.2, 42)
    assert r["split"] == split.to_dict() and r["split"]["n_test"] == 17 == r["n_queries"]
    assert r["per_query"]["query_ids"] == split.test
    assert set(r["metrics"]) == set(METRIC_NAMES)
    assert 0 < r["metrics"]["ndcg@10"] < 1 and 0 < r["metrics"]["map@100"] < 1
    # the same run built by hand: document encoder on plain query texts and on title + text
    from era_hf.task_embeddings import EncoderPair

    pair = EncoderPair(cache=EmbeddingCache(cache_dir))
    docs = np.array(pair.embed_document_side(adi.document_texts()))  # cached by the fixture's run
    np.testing.assert_allclose(docs[:4], minilm_encoder.encode(adi.document_texts()[:4]), atol=1e-5)
    queries = minilm_encoder.encode(adi.query_texts(split.test))
    order = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :100]
    ids = adi.document_ids()
    expected = retrieval_metrics(split.test, [[ids[j] for j in row] for row in order], adi.qrels)
    for name, values in expected.items():
        np.testing.assert_allclose(r["per_query"][name], values, atol=1e-6, err_msg=name)
        assert r["metrics"][name] == pytest.approx(float(values.mean()), abs=1e-9)
    assert doc_result["macro"] == pytest.approx(r["metrics"])
    assert list(doc_result["per_domain"]) == [adi.domain]
    enc = doc_result["encoders"]["document_encoder"]
    assert enc["model_id"] == MINILM and enc["revision"] == minilm_encoder.revision
    assert doc_result["method"]["type"] == "baseline" and doc_result["method"]["name"] == "doc"
    assert doc_result["label_ratio"] == 0.2 and doc_result["seed"] == 42 and doc_result["era_hf_version"]
    json.dumps(doc_result)  # JSON-ready


def test_evaluate_task_checks_shapes(adi):
    split = adi.split()
    with pytest.raises(ERAError, match="17 test queries"):
        evaluate_task(adi, split, np.zeros((3, 384), np.float32), np.ones((82, 384), np.float32))


def test_era_model_anchored_zero_init_equals_doc_baseline(adi, doc_result, cache_dir, tmp_path):
    """An anchored, zero-initialised head outputs the document encoder's own query embedding."""
    from era_hf import ERAModel
    from era_hf.task_embeddings import EncoderPair

    model = ERAModel.from_encoders(MINILM, MINILM, anchor=True)
    model.save_pretrained(tmp_path / "era")
    first = evaluate_suite(str(tmp_path / "era"), [adi], cache=EmbeddingCache(cache_dir))
    assert first["method"]["type"] == "era" and first["method"]["head_sha256"]
    np.testing.assert_allclose(first["tasks"]["adi"]["per_query"]["ndcg@10"],
                               doc_result["tasks"]["adi"]["per_query"]["ndcg@10"], atol=1e-6)
    warm = evaluate_suite(str(tmp_path / "era"), [adi], cache=EmbeddingCache(cache_dir))
    assert warm["models_loaded"] == 0 and warm["cache"]["misses"] == 0
    assert warm["tasks"]["adi"]["metrics"] == pytest.approx(first["tasks"]["adi"]["metrics"])
    # an in-memory model works too; a head on other encoders is refused
    in_memory = evaluate_suite(model, [adi], cache=EmbeddingCache(cache_dir))
    assert in_memory["macro"] == pytest.approx(first["macro"])
    with pytest.raises(ERAError, match="encoder pair"):
        evaluate_suite(model, [adi], EncoderPair(MPNET, MINILM, cache=False))
    with pytest.raises(ERAError, match="does not exist"):
        evaluate_suite(str(tmp_path / "missing"), [adi])


def test_era_model_with_lora_caches_on_the_adapter(adi, doc_result, cache_dir, tmp_path):
    """LoRA changes the query encoder: its embeddings are keyed on the adapter weights too."""
    from era_hf import ERAModel

    model = ERAModel.from_encoders(MINILM, MINILM, anchor=True, lora=True)  # LoRA B = 0: the base encoder
    model.save_pretrained(tmp_path / "lora")
    first = evaluate_suite(str(tmp_path / "lora"), [adi], cache=EmbeddingCache(cache_dir))
    assert first["method"]["lora"] and first["method"]["lora_sha256"] and first["models_loaded"] == 2
    assert first["cache"]["misses"] == 1  # the LoRA query side; corpus and anchor are shared hits
    np.testing.assert_allclose(first["tasks"]["adi"]["per_query"]["ndcg@10"],
                               doc_result["tasks"]["adi"]["per_query"]["ndcg@10"], atol=1e-6)
    warm = evaluate_suite(str(tmp_path / "lora"), [adi], cache=EmbeddingCache(cache_dir))
    assert warm["models_loaded"] == 0 and warm["cache"]["misses"] == 0


def test_query_baseline_and_suite_aggregation(adi, doc_result, cache_dir, tmp_path, shared_data):
    from era_hf.task_embeddings import EncoderPair

    # with MiniLM on both sides the query baseline is the doc baseline; its corpus is a cache hit
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(cache_dir))
    q = evaluate_suite("query", [adi], pair)
    assert q["tasks"]["adi"]["metrics"] == pytest.approx(doc_result["tasks"]["adi"]["metrics"])
    assert q["cache"]["hits"] >= 1
    # a suite directory of two tasks in two domains
    suite = tmp_path / "suite"
    shutil.copytree(shared_data / "adi", suite / "adi")
    shutil.copytree(shared_data / "adi", suite / "adi2")
    meta = json.loads((suite / "adi2" / "meta.json").read_text())
    meta.update(name="adi-copy", domain="other")
    (suite / "adi2" / "meta.json").write_text(json.dumps(meta))
    tasks = evaluation.load_tasks([str(suite)])
    assert [t.name for t in tasks] == ["adi", "adi-copy"]
    res = evaluate_suite("doc", tasks, EncoderPair(cache=EmbeddingCache(cache_dir)))
    assert res["models_loaded"] == 0 and sorted(res["per_domain"]) == sorted([adi.domain, "other"])
    assert res["macro"]["ndcg@10"] == pytest.approx(doc_result["macro"]["ndcg@10"])
    table = format_table([res])
    assert "macro (2 tasks)" in table and "domain: other" in table and "adi-copy" in table
    with pytest.raises(ERAError, match="duplicate task name 'adi'"):
        evaluation.load_tasks([str(suite), str(shared_data / "adi")])


def test_fusion_baseline_sums_the_two_cosine_scores(adi, cache_dir):
    from era_hf.task_embeddings import EncoderPair

    # the query side truncates queries to 8 tokens, so its scores differ from the document side's
    pair = EncoderPair(MINILM, MINILM, query_max_length=8, cache=EmbeddingCache(cache_dir))
    fused = evaluate_suite("fusion", [adi], pair)["tasks"]["adi"]
    split = adi.split(0.2, 42)
    scores = sum(np.asarray(pair.queries(adi, split.test, side)) @ np.asarray(pair.corpus(adi, side)).T
                 for side in ("document", "query"))
    expected = retrieval_metrics(split.test, rank_from_scores(scores, adi.document_ids(), 100), adi.qrels)
    np.testing.assert_allclose(fused["per_query"]["ndcg@10"], expected["ndcg@10"], atol=1e-6)
    short = evaluate_suite("query", [adi], pair)["tasks"]["adi"]["per_query"]["ndcg@10"]
    assert not np.allclose(short, fused["per_query"]["ndcg@10"])  # the sum is not one side alone
    assert evaluation.Baseline("fusion").describe()["description"].startswith("sum of")


def _run_cli(argv):
    from era_hf import cli

    return cli.main(argv)


def test_cli_end_to_end_and_warm_cache(adi, doc_result, cache_dir, shared_data, tmp_path, capsys):
    # a cache holding the corpus but not the test queries (saves re-embedding the corpus here)
    shutil.copytree(cache_dir, tmp_path / "c")
    for meta in (tmp_path / "c").glob("*.json"):
        if json.loads(meta.read_text())["n"] == 17:
            meta.unlink()
            meta.with_suffix(".npy").unlink()
    argv = ["evaluate", "--task", str(shared_data / "adi"), "--baseline", "doc", "--cache-dir", str(tmp_path / "c"),
            "--output", str(tmp_path / "results.json")]
    assert _run_cli(argv) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("task"))
    assert "nDCG@10" in header and "MAP@100" in header and "Recall@100" in header
    row = next(line for line in out.splitlines() if line.startswith("adi "))
    assert f"{doc_result['macro']['ndcg@10']:.4f}" in row and f"{doc_result['macro']['map@100']:.4f}" in row
    cold = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    assert cold["cache"]["misses"] == 1 and cold["cache"]["hits"] == 1 and cold["models_loaded"] == 1
    assert cold["macro"] == pytest.approx(doc_result["macro"])
    assert _run_cli(argv) == 0
    warm = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    assert warm["cache"]["hits"] == 2 and warm["cache"]["misses"] == 0 and warm["models_loaded"] == 0
    assert "0 miss(es); 0 encoder(s) loaded" in capsys.readouterr().err
    assert not list(tmp_path.glob(".results.json*"))  # atomic write left no temp file


def test_cli_notes_tasks_the_adapter_never_saw(adi, cache_dir, shared_data, tmp_path, capsys):
    from era_hf import ERAModel

    model = ERAModel.from_encoders(MINILM, MINILM, anchor=True)
    argv = ["evaluate", "--task", str(shared_data / "adi"), "--model", str(tmp_path / "era"), "--cache-dir",
            str(cache_dir)]
    for training, noted in (({"tasks": ["cisi"]}, True), ({"tasks": ["cisi"], "alignment_tasks": ["adi"]}, False),
                            ({"tasks": ["adi"]}, False), (None, False)):
        model.config.training = training
        model.save_pretrained(tmp_path / "era")
        assert _run_cli(argv) == 0
        err = capsys.readouterr().err
        assert ("neither trained nor aligned on adi" in err) == noted
        assert ("--alignment-tasks" in err) == noted


def test_cli_errors(shared_data, capsys):
    task = ["evaluate", "--task", str(shared_data / "adi")]
    assert _run_cli(task) == 2
    captured = capsys.readouterr()
    assert "pass --model and/or --baseline" in captured.out + captured.err
    assert _run_cli(task + ["--model", "x/y", "--query-encoder", MPNET]) == 2
    assert "an ERA model brings its own encoders" in capsys.readouterr().err
    assert _run_cli(["evaluate", "--task", "/nonexistent/task", "--baseline", "doc"]) == 2
    assert "task directory '/nonexistent/task' does not exist" in capsys.readouterr().err
