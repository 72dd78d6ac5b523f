"""benchmarks/cuda_check.py: CPU vs CUDA training of both recipes (here: the CPU half, and the cache it records)."""

from __future__ import annotations

import json

import torch

from era_hf.cache import EmbeddingCache
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task

from tests.conftest import MINILM, load_benchmark_script


def test_cpu_half_reports_both_recipes_and_records_a_cache_that_suffices(shared_data, tmp_path, monkeypatch):
    script = load_benchmark_script("cuda_check")
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    adi = str(shared_data / "adi")
    report = script.main(["--tasks", adi, "--out", str(tmp_path / "out"), "--query-encoder", MINILM,
                          "--document-encoder", MINILM, "--record-cache", str(tmp_path / "carried")])
    assert json.loads((tmp_path / "out" / "cuda_check.json").read_text()) == report
    assert report["tasks"] == ["adi"] and set(report["recipes"]) == {"reference", "recommended"}
    for entry in report["recipes"].values():
        assert entry["cpu"]["device"] == "cpu" and 0 < entry["cpu"]["ndcg@10"]["adi"] <= 1
        assert ("cuda" in entry) == torch.cuda.is_available()
    # the recorded entries alone serve what training read: the texts of adi on both sides, no model loaded
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "carried"))
    pair.corpus(load_task(adi))
    assert pair.models_loaded == 0
