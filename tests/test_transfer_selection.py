"""benchmarks/transfer_selection.py: leave-one-out methods scored on the held-out task's unread non-test queries."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from era_hf.cache import EmbeddingCache
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task
from tests.conftest import MINILM, load_benchmark_script, numpy_ndcg_per_query

FAST = ["--set", "alignment.distill_steps=5", "--set", "adaptation.epochs=2"]


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("transfer_selection")


@pytest.fixture
def suite(shared_data, tmp_path):
    """Two small tasks: adi, and a copy of it under another name (leave-one-out trains on one, scores the other)."""
    root = tmp_path / "suite"
    for name in ("adi", "adi_copy"):
        shutil.copytree(shared_data / "adi", root / name)
    meta = json.loads((root / "adi_copy" / "meta.json").read_text())
    (root / "adi_copy" / "meta.json").write_text(json.dumps({**meta, "name": "adi_copy"}))
    return root


def test_each_held_out_task_is_scored_on_its_unread_non_test_queries_and_rendered(script, suite, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "results" / "transfer_selection"
    argv = ["--suite", str(suite), "--query-encoder", MINILM, "--seeds", "0", *FAST]
    record = script.main([*argv, "--method", "rec+shrink", "--out", str(folder / "shrink.json")])
    assert json.loads((folder / "shrink.json").read_text())["results"] == record["results"]
    r = record["results"]
    adi = load_task(str(suite / "adi"))
    scored = script.scored_queries(adi, 0.2)
    assert not set(scored) & set(adi.split(0.2, 42).test)
    assert r["n_scored"] == {"adi": len(scored), "adi_copy": len(scored)}
    assert r["protocol"] == {"alignment.distill_judged_queries": False} and r["method"] == "rec+shrink"
    assert r["overrides"] == {"alignment.distill_steps": 5, "adaptation.epochs": 2}
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    doc = float(np.mean(list(numpy_ndcg_per_query(pair, adi, scored, "document").values())))
    assert r["baselines"]["doc"]["adi"] == pytest.approx(doc, abs=1e-6)
    assert r["baselines"]["doc"]["macro"] == pytest.approx(doc, abs=1e-6)
    [run] = r["runs"]
    assert set(run) == {"adi", "adi_copy", "macro"} and all(0 < v <= 1 for v in run.values())

    # a second method joins the same table; each cell says its difference from doc, and the worst task is named
    script.main([*argv, "--method", "era_recommended_index", "--out", str(folder / "index.json")])
    section = script.render_transfer_selection_section(tmp_path / "results")
    assert section.startswith("## Choosing leave-one-out options on queries training never read")
    assert f"adi {len(scored)}, adi_copy {len(scored)}" in section
    row = next(line for line in section.splitlines() if line.startswith("| `rec+shrink`"))
    assert f"{run['adi']:.4f} ({run['adi'] - doc:+.3f})" in row and f"| {run['macro']:.4f} |" in row
    worst = min(("adi", "adi_copy"), key=lambda n: run[n])
    assert f"| {worst} {run[worst] - doc:+.4f} |" in row
    index_row = "| `era_recommended_index`, `alignment.distill_steps=5`"
    assert any(line.startswith(index_row) for line in section.splitlines())
    assert script.render_transfer_selection_section(tmp_path / "nothing") == ""

    # another split seed scores the complement of another test half, in a table of its own, then across splits
    other = script.main([*argv, "--method", "rec+shrink", "--split-seed", "7",
                         "--out", str(folder / "split7" / "shrink.json")])["results"]
    assert other["split_seed"] == 7 and r["split_seed"] == 42
    assert other["n_scored"]["adi"] == len(script.scored_queries(adi, 0.2, 7))
    assert set(script.scored_queries(adi, 0.2, 7)) != set(scored)
    section = script.render_transfer_selection_section(tmp_path / "results")
    assert "### Split seed 42 (the benchmark's)" in section and "### Split seed 7\n" in section
    gains = [run["macro"] - doc, other["runs"][0]["macro"] - other["baselines"]["doc"]["macro"]]
    row = "| `rec+shrink`, `alignment.distill_steps=5`, `adaptation.epochs=2`"
    assert f"{row} | 2 | {np.mean(gains):+.4f} |" in section
    assert "`split7/shrink.json`" in section

    # a file's notes (e.g. a renamed row) follow its command
    noted = json.loads((folder / "shrink.json").read_text())
    noted["notes"] = ["measured as rec+old_name, renamed"]
    (folder / "shrink.json").write_text(json.dumps(noted))
    assert "min (measured as rec+old_name, renamed)" in script.render_transfer_selection_section(tmp_path / "results")

    # files scored on other queries cannot share the table
    other = json.loads((folder / "index.json").read_text())
    other["results"]["n_scored"]["adi"] += 1
    (folder / "index.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="index.json and shrink.json were scored on different tasks or queries"):
        script.render_transfer_selection_section(tmp_path / "results")


def test_labelled_protocols_score_the_queries_that_are_neither_test_nor_labels(script, suite, tmp_path, monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "results" / "label_selection" / "in_domain"
    argv = ["--suite", str(suite), "--query-encoder", MINILM, "--seeds", "0", "--protocol", "in_domain", *FAST]
    r = script.main([*argv, "--method", "era_recommended", "--out", str(folder / "hybrid.json")])["results"]
    adi = load_task(str(suite / "adi"))
    split = adi.split(0.2, 42)
    unread = script.unread_queries(adi, "in_domain", 0.2)
    assert unread and not set(unread) & {*split.train, *split.val, *split.test}
    assert set(unread) | set(split.train) | set(split.val) == set(script.scored_queries(adi, 0.2))
    assert script.unread_queries(adi, "leave_one_out", 0.2) == script.scored_queries(adi, 0.2)
    assert r["training_protocol"] == "in_domain" and r["n_scored"] == {"adi": len(unread), "adi_copy": len(unread)}
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    doc = float(np.mean(list(numpy_ndcg_per_query(pair, adi, unread, "document").values())))
    assert r["baselines"]["doc"]["adi"] == pytest.approx(doc, abs=1e-6)
    [run] = r["runs"]
    assert set(run) == {"adi", "adi_copy", "macro"} and all(0 < v <= 1 for v in run.values())

    # its own section, one subsection per protocol; the leave-one-out section stays empty
    section = script.render_label_selection_section(tmp_path / "results")
    assert section.startswith("## Choosing options on labelled collections, on queries training never read")
    assert "### in_domain" in section and "#### Split seed 42 (the benchmark's)" in section
    assert f"adi {len(unread)}, adi_copy {len(unread)}" in section and "`hybrid.json`: `" in section
    row = next(line for line in section.splitlines() if line.startswith("| `era_recommended`"))
    assert f"| **{run['macro']:.4f}** ({run['macro'] - doc:+.4f}) |" in row
    assert script.render_transfer_selection_section(tmp_path / "results") == ""

    # a calibrated re-ranking picks its weight per task on the split's validation queries, then scores the unread ones
    calibrated = script.main([*argv, "--method", "rec+rerank_val", "--out", str(folder / "val.json")])["results"]
    assert set(calibrated["runs"][0]) == {"adi", "adi_copy", "macro"}
    assert all(0 < v <= 1 for v in calibrated["runs"][0].values())


def test_bad_arguments_are_refused_by_name_before_anything_is_written(script, suite, shared_data, tmp_path, capsys):
    twins = tmp_path / "twins"  # two folders, one task name
    for name in ("a", "b"):
        shutil.copytree(shared_data / "adi", twins / name)
    for argv, said in ((["--suite", str(suite), "--method", "nope"], "unknown benchmark method 'nope'"),
                       (["--suite", str(suite), "--method", "distill_only"], "trained on labels"),
                       (["--suite", str(suite), "--method", "rec+shrink", "--set",
                         "alignment.distill_judged_queries=true"], "distill_judged_queries: fixed"),
                       (["--suite", str(suite), "--method", "rec+shrink", "--set", "seed=3"], "seed: fixed"),
                       (["--suite", str(suite), "--method", "era_recommended_index", "--protocol", "per_task"],
                        "a leave_one_out method"),
                       (["--suite", str(suite), "--method", "rec+rerank_val"], "an in_domain / per_task method"),
                       (["--suite", str(suite), "--method", "rec+shrink", "--protocol", "in_domain",
                         "--label-ratio", "0.4"], "no judged query of adi, adi_copy is left"),
                       (["--suite", str(shared_data), "--tasks", "adi", "--method", "rec+shrink"], "at least two"),
                       (["--suite", str(tmp_path / "nope"), "--method", "rec+shrink"], "--suite"),
                       (["--suite", str(twins), "--method", "rec+shrink"], "duplicate task name 'adi'")):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*argv, "--out", str(tmp_path / "out.json")])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
