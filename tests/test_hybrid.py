"""Hybrid search: BM25 of the query text fused with the dense cosines (era_hf.lexical.fuse_lexical), in exact
search, the document index, evaluation, training (the weight picked on validation) and the Space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import adi, cache_dir, run, small_args  # noqa: F401 (fixtures)

from era_hf.errors import ERAError
from era_hf.evaluation import evaluate_suite, lexical_scores, search_exact
from era_hf.index import DocumentIndex
from era_hf.lexical import BM25, fuse_lexical

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = ["wing lift at supersonic speed", "drag of a wing in a tunnel", "orbit of a satellite", "lift and drag",
        "boundary layer transition", "heat transfer in a nozzle"]


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per row, written apart from the module's torch code (sample standard deviation, as torch.std)."""
    return (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)


def _embeddings(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------- the fused score
def test_fusion_is_the_sum_of_z_scores_and_ignores_each_parts_scale():
    rng = np.random.default_rng(1)
    dense, lexical = rng.normal(size=(4, 9)), rng.gamma(2.0, size=(4, 9))
    want = _zscore(dense) + 0.3 * _zscore(lexical)
    assert np.allclose(fuse_lexical(dense, lexical, 0.3), want, atol=1e-5)
    # rescaling either part (BM25's absolute level depends on the corpus) changes nothing
    assert np.allclose(fuse_lexical(5 * dense + 2, 10 * lexical, 0.3), want, atol=1e-4)
    assert np.array_equal(np.argsort(fuse_lexical(dense, lexical, 0.0), 1), np.argsort(dense, 1))


def test_exact_search_ranks_by_the_fused_score():
    docs, queries = _embeddings(len(DOCS)), _embeddings(3, seed=1)
    texts = ["supersonic wing", "satellite orbit", "nozzle"]
    lexical = BM25(DOCS).scores(texts).numpy()
    ids = [f"d{i}" for i in range(len(DOCS))]
    ranked, scores = search_exact(queries, docs, ids, k=3, return_scores=True, lexical=lexical, lexical_weight=2.0)
    fused = _zscore(queries @ docs.T) + 2.0 * _zscore(lexical)
    assert ranked == [[ids[j] for j in np.argsort(-row, kind="stable")[:3]] for row in fused]
    assert np.allclose(scores, -np.sort(-fused, 1)[:, :3], atol=1e-4)
    # a strong lexical weight puts each query's term match first
    assert [r[0] for r in ranked] == ["d0", "d2", "d5"]


def test_exact_search_refuses_missing_or_mis_shaped_bm25_scores():
    docs, queries = _embeddings(len(DOCS)), _embeddings(2)
    ids = [f"d{i}" for i in range(len(DOCS))]
    for lexical in (None, np.zeros((2, 3)), np.zeros((3, len(DOCS)))):
        with pytest.raises(ERAError, match="hybrid search .* needs the BM25 scores of the 2 queries"):
            search_exact(queries, docs, ids, lexical=lexical, lexical_weight=0.5)


# ---------------------------------------------------------------------- the document index
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_hybrid_search_scores_every_document_exactly(kind):
    docs = _embeddings(len(DOCS))
    index = DocumentIndex.from_embeddings(docs, [f"d{i}" for i in range(len(DOCS))], DOCS, kind=kind)
    queries, texts = _embeddings(2, seed=3), ["wing drag", "heat nozzle"]
    scores, ids = index.search(queries, k=4, query_texts=texts, lexical_weight=0.7)
    want_ids, want_scores = search_exact(queries, docs, index.doc_ids, k=4, return_scores=True,
                                         lexical=BM25(DOCS).scores(texts).numpy(), lexical_weight=0.7)
    assert ids == want_ids and np.allclose(scores, want_scores, atol=1e-5)
    # weight 0 is the plain cosine search
    assert index.search(queries, k=4, query_texts=texts, lexical_weight=0.0)[1] == index.search(queries, k=4)[1]


def test_index_hybrid_search_reads_titles_too_and_survives_save_and_load(tmp_path):
    docs = _embeddings(3)
    index = DocumentIndex.from_embeddings(docs, ["a", "b", "c"], ["first text", "second text", "third text"],
                                          titles=["", "Hypersonic", ""])
    query = docs[0] + 0.01  # nearest to "a" by cosine
    assert index.search(query, k=1)[1] == [["a"]]
    assert index.search(query, k=1, query_texts=["hypersonic"], lexical_weight=3.0)[1] == [["b"]]
    loaded = DocumentIndex.load(index.save(tmp_path / "index"))
    assert loaded.search(query, k=1, query_texts=["hypersonic"], lexical_weight=3.0)[1] == [["b"]]


@pytest.mark.parametrize("texts, weight, message", [
    (None, 0.5, "needs query_texts: a list of 1 string"),
    (["a", "b"], 0.5, "needs query_texts: a list of 1 string"),
    ("wing", 0.5, "needs query_texts"),
    ([3], 0.5, "needs query_texts"),
    (["wing"], -1.0, "lexical_weight .* must be a finite number >= 0"),
    (["wing"], float("nan"), "lexical_weight .* must be a finite number >= 0"),
])
def test_index_hybrid_search_bad_arguments(texts, weight, message):
    index = DocumentIndex.from_embeddings(_embeddings(len(DOCS)), [f"d{i}" for i in range(len(DOCS))], DOCS)
    with pytest.raises(ERAError, match=message):
        index.search(_embeddings(1)[0], k=2, query_texts=texts, lexical_weight=weight)


def test_index_without_texts_refuses_hybrid_search():
    index = DocumentIndex.from_embeddings(_embeddings(3), ["a", "b", "c"])
    with pytest.raises(ERAError, match="holds none"):
        index.search(_embeddings(1), k=1, query_texts=["x"], lexical_weight=0.5)


# ---------------------------------------------------------------------- evaluation
def test_doc_lexical_baseline_picks_its_weight_on_non_test_queries_only(adi):
    from era_hf.metrics import retrieval_metrics
    from era_hf.task_embeddings import EncoderPair

    pair = EncoderPair()
    res = evaluate_suite("doc+lexical", [adi], pair)
    selection = res["lexical_weight_selection"]
    scores = {float(w): v for w, v in selection["val_ndcg@10"].items()}
    assert res["lexical_weight"] == max(scores, key=lambda w: (scores[w], -w))
    # the pick's own numbers, recomputed from the split's train + validation queries
    split = adi.split(0.2, 42)
    qids = [q for q in [*split.train, *split.val] if any(v > 0 for v in adi.qrels.get(q, {}).values())]
    assert selection["n_queries"] == len(qids) and not set(qids) & set(split.test)
    q, d = np.array(pair.queries(adi, qids, side="document")), np.array(pair.corpus(adi))
    for weight in (0.0, 0.5):
        ranked = search_exact(q, d, adi.document_ids(), k=10, lexical=lexical_scores(adi, qids), lexical_weight=weight)
        assert scores[weight] == pytest.approx(float(retrieval_metrics(qids, ranked, adi.qrels, ks=(10,))["ndcg@10"].mean()))
    # the test score is the doc baseline's evaluated in hybrid search at the picked weight
    same = evaluate_suite("doc", [adi], pair, lexical_weight=res["lexical_weight"])
    assert same["macro"]["ndcg@10"] == pytest.approx(res["macro"]["ndcg@10"])
    assert evaluate_suite("doc", [adi], pair)["lexical_weight"] == 0.0


def test_evaluate_refuses_a_bad_lexical_weight(adi):
    with pytest.raises(ERAError, match="lexical_weight .* must be a finite number >= 0"):
        evaluate_suite("doc", [adi], lexical_weight=-0.1)


# ---------------------------------------------------------------------- training picks the weight
def test_training_picks_the_weight_on_validation_and_evaluation_uses_it(adi, cache_dir, tmp_path):
    from era_hf import ERAConfig

    args = small_args(tmp_path / "m", cache_dir, adaptation={"lexical_margin_se": 0.0,
                                                             "lexical_weights": [0.0, 0.3, 3.0]})
    trainer, model = run([adi], args)
    record = json.loads((tmp_path / "m" / "training_log.json").read_text())["stages"]["lexical_weight"]
    scores = {float(w): v for w, v in record["val_ndcg@10"].items()}
    assert set(scores) == {0.0, 0.3, 3.0}
    picked = max(scores, key=lambda w: (scores[w], -w))
    assert record["lexical_weight"] == picked == model.config.lexical_weight
    assert ERAConfig.from_pretrained(str(tmp_path / "m")).lexical_weight == picked
    # the weights really differ on validation (BM25 at weight 3 dominates the ranking)
    assert len(set(scores.values())) > 1
    res = evaluate_suite(str(tmp_path / "m"), [adi])
    assert res["lexical_weight"] == picked and res["method"]["lexical_weight"] == picked
    dense = evaluate_suite(str(tmp_path / "m"), [adi], lexical_weight=0.0)
    if picked:
        assert res["tasks"]["adi"]["per_query"]["ndcg@10"] != dense["tasks"]["adi"]["per_query"]["ndcg@10"]


def test_picking_the_weight_needs_labels_and_valid_weights():
    from era_hf.training import AdaptationArguments, TrainingArguments

    with pytest.raises(ERAError, match="mode alignment_only reads no label"):
        TrainingArguments(tasks=["x"], output_dir="out", mode="alignment_only",
                          adaptation=AdaptationArguments(lexical_margin_se=0.0)).validate()
    for bad in ((), (0.5, -1.0), (float("nan"),), 1.0, ("0.5",)):
        with pytest.raises(ERAError, match="lexical_weights must be a non-empty list of numbers >= 0"):
            AdaptationArguments(lexical_weights=bad).validate()
    with pytest.raises(ERAError, match="lexical_margin_se must be a number >= 0"):
        AdaptationArguments(lexical_margin_se=-1.0).validate()


@pytest.mark.parametrize("value", [-0.5, float("inf"), "0.3", True])
def test_config_refuses_a_bad_lexical_weight(value):
    from era_hf import ERAConfig

    with pytest.raises(ERAError, match="lexical_weight .* must be a finite number >= 0"):
        ERAConfig(lexical_weight=value)


# ---------------------------------------------------------------------- the Space
def test_space_searches_in_hybrid_when_the_model_says_so(shared_data, tmp_path):
    from era_hf import ERAModel
    from era_hf.space import SearchService
    from era_hf.tasks import load_task

    task = load_task(str(shared_data / "adi"))
    torch.manual_seed(0)
    model = ERAModel.from_encoders("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
    model.config.lexical_weight = 0.5
    rows = task.corpus.select(range(40))
    index = DocumentIndex.build(model, rows["_id"], rows["text"], titles=rows["title"])
    service = SearchService(model, index)
    query = "computer programs that index documents by their words"
    result = service.search_batch([query], ks=[5])[0]
    emb = model.encode_queries([query], instruction=service.instruction)
    want_scores, want_ids = index.search(emb, 5, query_texts=[query], lexical_weight=0.5)
    assert [h["id"] for h in result["era"]["results"]] == want_ids[0]
    assert np.allclose([h["score"] for h in result["era"]["results"]], want_scores[0], atol=1e-4)
    dense_ids = index.search(emb, 5)[1][0]
    assert dense_ids != want_ids[0]  # the BM25 part changes this query's list
    assert service.describe()["lexical_weight"] == 0.5


def test_a_single_weight_is_kept_and_the_model_card_says_how_to_search(adi, cache_dir, tmp_path):
    from era_hf.model_card import build_model_card

    run([adi], small_args(tmp_path / "m", cache_dir, adaptation={"lexical_margin_se": 0.0, "lexical_weights": [0.3]}))
    text = str(build_model_card(tmp_path / "m", repo_id="someone/era-hybrid"))
    assert "lexical_weight=model.config.lexical_weight)  # 0.3" in text
    assert "This model searches **in hybrid**" in text
    assert "BM25's weight in hybrid search 0.3, picked on validation nDCG@10 of hybrid search" in text
    run([adi], small_args(tmp_path / "dense", cache_dir))
    dense = str(build_model_card(tmp_path / "dense", repo_id="someone/era-dense"))
    assert "hybrid" not in dense and "index.search(model.encode_queries([" in dense


def test_cli_evaluates_the_hybrid_baseline_and_a_fixed_weight(shared_data, cache_dir, tmp_path, capsys):
    from era_hf import cli

    task = ["evaluate", "--task", str(shared_data / "adi"), "--cache-dir", str(cache_dir)]
    assert cli.main(task + ["--baseline", "doc+lexical", "--output", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    weight = run["lexical_weight"]
    assert weight > 0 and run["lexical_weight_selection"]["n_queries"] > 0
    # the table names the cheap encoder it searches with, and the BM25 weight
    assert "baseline doc+lexical: sentence-transformers/all-MiniLM-L6-v2" in out
    assert f"+ BM25 x {weight:g} (hybrid search)" in out
    assert cli.main(task + ["--baseline", "doc", "--lexical-weight", str(weight), "--output",
                            str(tmp_path / "fixed.json")]) == 0
    fixed = json.loads((tmp_path / "fixed.json").read_text())["runs"][0]
    assert fixed["macro"]["ndcg@10"] == pytest.approx(run["macro"]["ndcg@10"]) and fixed["lexical_weight"] == weight
    capsys.readouterr()
    assert cli.main(task + ["--baseline", "doc", "--lexical-weight", "nan"]) == 2
    assert "error: --lexical-weight (the weight of BM25 in hybrid search" in capsys.readouterr().err


def test_the_benchmark_scripts_score_a_hybrid_model_in_hybrid(adi, cache_dir, tmp_path):
    from tests.conftest import load_benchmark_script

    common = load_benchmark_script("_common")
    run([adi], small_args(tmp_path / "m", cache_dir, adaptation={"lexical_margin_se": 0.0, "lexical_weights": [2.0]}))
    from era_hf.cache import EmbeddingCache
    from era_hf.evaluation import ERAMethod
    from era_hf.task_embeddings import EncoderPair

    method = ERAMethod(str(tmp_path / "m"))
    assert method.lexical_weight == 2.0
    pair = EncoderPair.from_config(method.config, cache=EmbeddingCache(cache_dir))
    test = list(adi.split(0.2, 42).test)
    res = evaluate_suite(method, [adi], pair)
    assert common.ndcg_per_query(method, pair, adi, test) == pytest.approx(res["tasks"]["adi"]["per_query"]["ndcg@10"])
    dense = evaluate_suite(method, [adi], pair, lexical_weight=0.0)["tasks"]["adi"]["per_query"]["ndcg@10"]
    assert dense != res["tasks"]["adi"]["per_query"]["ndcg@10"]
    from era_hf.evaluation import Baseline

    with pytest.raises(ERAError, match="must be a finite number >= 0, got 'validation'"):
        common.ndcg_per_query(Baseline("doc+lexical"), pair, adi, test)


# ---------------------------------------------------------------------- the recipe's default: hybrid where labels are read
def test_auto_searches_in_hybrid_whenever_labels_are_read():
    from era_hf.benchmark import _hash_arguments
    from era_hf.training import get_recipe
    from era_hf.training.arguments import resolved_lexical_margin_se

    recipe = get_recipe("recommended")
    plain = recipe.arguments(tasks=["x"], output_dir="out")
    assert plain.adaptation.lexical_margin_se == "auto"
    assert resolved_lexical_margin_se(plain) == 0.0
    assert resolved_lexical_margin_se(recipe.arguments(tasks=["x"], output_dir="out", mode="label_only")) == 0.0
    stage1 = recipe.arguments(tasks=["x"], output_dir="out", mode="alignment_only")
    stage1.validate()  # 'auto' reads no label where there is none: not refused
    assert resolved_lexical_margin_se(stage1) is None
    for value in (None, 0.0, 1.0):
        given = recipe.arguments(tasks=["x"], output_dir="out", adaptation={"lexical_margin_se": value})
        assert resolved_lexical_margin_se(given) == value
    # result hashes: what the run does, so a row that set the margin to 0 and the recipe's 'auto' share one, and
    # the dense rows stored before the field existed keep theirs
    hybrid = recipe.arguments(tasks=["x"], output_dir="out", adaptation={"lexical_margin_se": 0.0})
    assert _hash_arguments(plain, True)["adaptation.lexical_margin_se"] == 0.0
    assert _hash_arguments(plain, True) == _hash_arguments(hybrid, True) == _hash_arguments(plain, True, True)
    dense = recipe.arguments(tasks=["x"], output_dir="out", adaptation={"lexical_margin_se": None})
    assert _hash_arguments(dense, True) == {k: v for k, v in _hash_arguments(plain, True).items()
                                            if not k.startswith("adaptation.lexical_")}


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("none", None), ("0", 0.0), ("1.5", 1.5)])
def test_the_cli_flag_takes_a_number_auto_or_none(text, value, tmp_path):
    import argparse

    from era_hf.train import add_arguments, arguments_from_namespace

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--tasks", "x", "--output", str(tmp_path), "--recipe", "recommended",
                            "--adaptation.lexical-margin-se", text])
    assert arguments_from_namespace(ns).adaptation.lexical_margin_se == value


def test_the_recipe_searches_in_hybrid_by_default_with_or_without_alignment_tasks(adi, cache_dir, tmp_path):
    from test_training import write_beir

    from era_hf.tasks import load_task

    other = load_task(str(write_beir(tmp_path / "other", 60, 12, "other")))
    args = small_args(tmp_path / "m", cache_dir, recipe="recommended", alignment={"distill_steps": 5},
                      adaptation={"lexical_weights": [0.0, 3.0]})
    from era_hf.training import ERATrainer

    trainer = ERATrainer(None, [adi], args, alignment_tasks=[other])
    model = trainer.train()
    record = trainer.log["stages"]["lexical_weight"]
    assert set(record["val_ndcg@10"]) == {"0.0", "3.0"} and model.config.lexical_weight == record["lexical_weight"]
    assert "adaptation.lexical_margin_se" not in trainer.log["recipe_overrides"]  # the recipe's own 'auto'
    args = small_args(tmp_path / "d", cache_dir, recipe="recommended", alignment={"distill_steps": 5},
                      adaptation={"lexical_weights": [0.0, 3.0]})
    trainer = ERATrainer(None, [adi], args)
    trainer.train()
    assert set(trainer.log["stages"]["lexical_weight"]["val_ndcg@10"]) == {"0.0", "3.0"}  # without them too
    args = small_args(tmp_path / "n", cache_dir, recipe="recommended", alignment={"distill_steps": 5},
                      adaptation={"lexical_margin_se": None})
    trainer = ERATrainer(None, [adi], args)
    assert trainer.train().config.lexical_weight == 0.0 and "lexical_weight" not in trainer.log["stages"]
