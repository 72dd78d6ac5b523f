"""benchmarks/strong_ceiling.py: distilling the query encoder's ranking into the head, and its report section."""

from __future__ import annotations

import json

import pytest

from era_hf.cache import EmbeddingCache
from era_hf.evaluation import evaluate_suite
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task

from tests.conftest import MINILM, load_benchmark_script


def test_same_encoder_teacher_is_the_cheap_ranking_and_the_section_shows_the_file(shared_data, tmp_path,
                                                                                   monkeypatch):
    script = load_benchmark_script("strong_ceiling")
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results" / "ceiling" / "adi.json"
    record = script.main(["--task", str(shared_data / "adi"), "--out", str(out), "--query-encoder", MINILM,
                          "--document-encoder", MINILM, "--weights", "1", "100", "--steps", "20", "--seeds", "0", "1",
                          "--head", "mlp"])
    assert json.loads(out.read_text())["results"] == record["results"]
    r = record["results"]
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    doc = evaluate_suite("doc", [load_task(str(shared_data / "adi"))], pair)["macro"]["ndcg@10"]
    assert r["doc_zero_shot"] == pytest.approx(doc, abs=1e-9)  # the package's own evaluator agrees
    # one encoder on both sides: cheap + W x strong is W+1 times the cheap scores, the same ranking
    assert r["query_zero_shot"] == pytest.approx(doc, abs=1e-9)
    for w in ("1", "100"):
        v = r["weights"][w]
        assert v["teacher"] == pytest.approx(doc, abs=1e-9)
        assert len(v["head_per_seed"]) == 2 and all(0 < x <= 1 for x in v["head_per_seed"])
        assert len(v["test_only_head_per_seed"]) == 2 and all(0 < x <= 1 for x in v["test_only_head_per_seed"])
        # the teacher ranks with the cheap vectors themselves, which the free vectors start from and keep
        assert v["free_vectors"] == pytest.approx(doc, abs=0.02)
    section = script.render_ceiling_section(tmp_path / "results")
    assert r["settings"]["head"] == "mlp" and "documents; mlp head, 20 steps" in section
    assert "### adi: `adi.json`" in section and f"| `doc`: cheap encoder zero-shot | {doc:.4f} |" in section
    assert f"**{r['weights']['100']['head_mean']:.4f}**" in section
    free = r["weights"]["100"]["free_vectors"]
    assert f"| a free vector per test query, fitted alone to the teacher's ranking | {free:.4f} |" in section
    assert script.render_ceiling_section(tmp_path / "nothing") == ""  # no results: no section
