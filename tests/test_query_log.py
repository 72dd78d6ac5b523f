"""benchmarks/query_log.py: unjudged past queries appended to a task reach stage 1, and the report section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from era_hf.cache import EmbeddingCache
from era_hf.evaluation import evaluate_suite
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task
from tests.conftest import MINILM, load_benchmark_script


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("query_log")


def test_halves_cut_the_test_queries_in_two_disjoint_seeded_halves(script):
    ids = [f"q{i}" for i in range(17)]
    a, b = script.halves(ids)
    assert len(a) == 8 and len(b) == 9 and sorted(a + b) == sorted(ids)
    assert script.halves(ids) == (a, b) and script.halves(ids, seed=1) != (a, b)


def test_a_logged_copy_keeps_the_split_and_its_log_reaches_the_distillation(script, shared_data, tmp_path):
    from era_hf.training import TrainingArguments
    from era_hf.training.data import non_test_query_ids, prepare_tasks

    adi = load_task(str(shared_data / "adi"))
    log, _ = script.halves(list(adi.split(0.2, 42).test))
    copy = load_task(str(script.task_with_log(shared_data / "adi", tmp_path / "adi", log,
                                              dict(zip(log, adi.query_texts(log))))))
    assert copy.name == "adi" and copy.split(0.2, 42).to_dict() == adi.split(0.2, 42).to_dict()
    assert copy.query_texts([script.LOG_PREFIX + q for q in log]) == adi.query_texts(log)
    args = TrainingArguments.from_recipe("recommended", output_dir=str(tmp_path / "out"), query_encoder=MINILM,
                                         document_encoder=MINILM)
    with_log = non_test_query_ids(prepare_tasks([copy], args)[0], args)
    without = non_test_query_ids(prepare_tasks([adi], args)[0], args)
    assert with_log == without + [script.LOG_PREFIX + q for q in log]
    assert json.loads((tmp_path / "adi" / "meta.json").read_text())["sha256"].get("queries.jsonl") is None


def test_run_scores_half_b_and_the_log_changes_the_adapter(script, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "suite"  # a folder named unlike its task (meta.json says "adi"): copies follow the folder
    (suite / "adi-copy").mkdir(parents=True)
    for entry in (shared_data / "adi").iterdir():
        (suite / "adi-copy" / entry.name).symlink_to(entry)
    out = tmp_path / "results" / "query_log" / "adi.json"
    record = script.main(["--suite", str(suite), "--tasks", "adi-copy", "--out", str(out), "--query-encoder",
                          MINILM, "--protocol", "per_task", "--modes", "alignment_only", "--seeds", "0",
                          "--distill-steps", "20"])
    assert json.loads(out.read_text())["results"] == record["results"]
    r = record["results"]
    adi = load_task(str(shared_data / "adi"))
    log, scored = script.halves(list(adi.split(0.2, 42).test))
    assert r["n_scored"] == {"adi": len(scored)} and r["n_log"] == {"adi": len(log)}
    # the doc baseline on half B, from the package's evaluator's per-query values
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    per_query = evaluate_suite("doc", [adi], pair)["tasks"]["adi"]["per_query"]
    values = dict(zip(per_query["query_ids"], per_query["ndcg@10"]))
    assert r["baselines"]["doc"]["adi"] == pytest.approx(np.mean([values[q] for q in scored]), abs=1e-12)
    rows = r["modes"]["alignment_only"]
    # same seed, same recipe: only the log differs, so the heads (and their half-B rankings) must differ
    assert rows["with_log"][0]["adi"] != rows["without_log"][0]["adi"]
    section = script.render_query_log_section(tmp_path / "results")
    assert "### `adi.json`" in section and "Protocol `per_task`" in section
    assert f"| `doc` | {r['baselines']['doc']['adi']:.4f} |" in section
    assert f"(seeds {rows['with_log'][0]['macro']:.4f})" in section
    assert script.render_query_log_section(tmp_path / "nothing") == ""


def test_a_missing_suite_or_task_is_refused_by_name(script, shared_data, tmp_path, capsys):
    for argv, said in ((["--suite", str(tmp_path / "nope")], "--suite"),
                       (["--suite", str(shared_data), "--tasks", "adi", "nope"], "named nope")):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*argv, "--out", str(tmp_path / "out.json")])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
