"""benchmarks/stage1_selection.py: stage-1 settings scored on judged queries that stage 1 never read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from era_hf.cache import EmbeddingCache
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task
from tests.conftest import MINILM, load_benchmark_script, numpy_ndcg_per_query


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("stage1_selection")


def test_configs_parse_like_benchmark_set_and_the_protocol_fields_are_refused(script):
    assert script.parse_config("recipe") == ("recipe", {})
    assert script.parse_config("no_bm25:alignment.distill_lexical_weight=0,alignment.distill_lr=1e-3") == \
        ("no_bm25", {"alignment.distill_lexical_weight": 0, "alignment.distill_lr": 0.001})
    for bad, said in ((":alignment.distill_lr=1", "give a name"), ("x:seed=3", "seed is fixed"),
                      ("x:alignment.distill_judged_queries=true", "distill_judged_queries is fixed")):
        with pytest.raises(ValueError, match=said):
            script.parse_config(bad)


def test_scored_queries_are_the_judged_ones_outside_the_test_split(script, shared_data):
    adi = load_task(str(shared_data / "adi"))
    scored = script.scored_queries(adi, 0.2)
    split = adi.split(0.2, 42)
    assert set(scored) == set(adi.judged_query_ids()) - set(split.test) and len(scored) == len(set(scored))
    assert set(split.train) | set(split.val) <= set(scored)


def test_run_scores_unseen_non_test_queries_and_renders_a_section(script, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results" / "stage1_selection" / "adi.json"
    record = script.main(["--suite", str(shared_data), "--tasks", "adi", "--out", str(out), "--query-encoder", MINILM,
                          "--protocols", "per_task", "--seeds", "0", "--config", "short:alignment.distill_steps=20",
                          "--config", "shorter:alignment.distill_steps=5"])
    assert json.loads(out.read_text())["results"] == record["results"]
    r = record["results"]
    adi = load_task(str(shared_data / "adi"))
    scored = script.scored_queries(adi, 0.2)
    assert r["n_scored"] == {"adi": len(scored)} and r["configs"]["short"] == {"alignment.distill_steps": 20}
    # the doc baseline on the scored queries, ranked here with plain numpy
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    doc = float(np.mean(list(numpy_ndcg_per_query(pair, adi, scored, "document").values())))
    assert r["baselines"]["doc"]["adi"] == pytest.approx(doc, abs=1e-6)
    rows = r["protocols"]["per_task"]
    assert rows["short"][0]["adi"] != rows["shorter"][0]["adi"]  # the configuration reached the trainer
    section = script.render_stage1_selection_section(tmp_path / "results")
    assert "### `adi.json`" in section and f"adi {len(scored)}" in section
    assert r["resolved"]["shorter"]["alignment.distill_steps"] == 5 and "steps 5, temperature 0.05" in section
    assert f"| per_task, `short` (seeds {rows['short'][0]['macro']:.4f}) |" in section
    diff = rows["shorter"][0]["macro"] - rows["short"][0]["macro"]
    assert f"{diff:+.4f}, higher on {int(diff > 0)} of 1 seeds" in section
    assert script.render_stage1_selection_section(tmp_path / "nothing") == ""


def test_bad_arguments_are_refused_by_name_before_anything_is_written(script, shared_data, tmp_path, capsys):
    for argv, said in ((["--suite", str(tmp_path / "nope"), "--config", "a"], "--suite"),
                       (["--suite", str(shared_data), "--tasks", "nope", "--config", "a"], "named nope"),
                       (["--suite", str(shared_data), "--config", "a:mode=both"], "mode is fixed"),
                       (["--suite", str(shared_data), "--config", "a:alignment.nope=1"], "unknown field"),
                       (["--suite", str(shared_data), "--config", "a", "--config", "a"], "unique")):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*argv, "--out", str(tmp_path / "out.json")])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
