"""era-hf benchmark (era_hf.benchmark, era_hf.benchmark_report): a tiny end-to-end run (MiniLM on both sides,
adi + medline, --quick epochs, one seed, r = 0.2, all three protocols), resume without retraining, the report, and
the statistics. Uses the shared test embedding cache (warm after the first run)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from era_hf.errors import ERAError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PAIR = "all-MiniLM-L6-v2__all-MiniLM-L6-v2"
METHODS = ["doc", "query", "era_reference", "label_only", "alignment_only", "era_recommended_index"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parser() -> argparse.ArgumentParser:
    from era_hf.benchmark import register_cli

    parser = argparse.ArgumentParser(prog="era-hf")
    register_cli(parser.add_subparsers(dest="command"))
    return parser


def _cache_dir() -> str:
    return os.environ.get("ERA_HF_TEST_CACHE", str(Path(tempfile.gettempdir()) / "era_hf_test_cache"))


@pytest.fixture(scope="module")
def bench(shared_data, tmp_path_factory):
    """Run the benchmark once, then again (resume); return the directory, both summaries and logs."""
    from era_hf.benchmark import config_from_namespace, run_benchmark

    out = tmp_path_factory.mktemp("bench")
    report = out / "BENCHMARKS.md"
    argv = ["benchmark", "--suite", str(shared_data / "adi"), str(shared_data / "medline"),
            "--query-encoder", MINILM, "--document-encoder", MINILM, "--label-ratios", "0.2", "--seeds", "1",
            "--methods", *METHODS, "--protocols", "in_domain", "per_task", "leave_one_out", "--quick",
            "--out", str(out / "results"), "--report", str(report), "--cache-dir", _cache_dir()]
    cfg = config_from_namespace(_parser().parse_args(argv))
    logs1: list[str] = []
    t0 = time.perf_counter()
    first = run_benchmark(cfg, log=logs1.append)
    t1 = time.perf_counter()
    logs2: list[str] = []
    second = run_benchmark(config_from_namespace(_parser().parse_args(argv)), log=logs2.append)
    t2 = time.perf_counter()
    return {"out": out / "results", "report": report, "first": first, "second": second, "logs1": logs1,
            "logs2": logs2, "seconds": (t1 - t0, t2 - t1)}


def test_result_files_and_progress_lines(bench):
    root = bench["out"] / PAIR
    expected = [root / "baselines" / "doc.json", root / "baselines" / "query.json",
                root / "in_domain" / "era_reference" / "r0.2" / "seed0.json",
                root / "in_domain" / "label_only" / "r0.2" / "seed0.json",
                root / "in_domain" / "alignment_only" / "no_labels" / "seed0.json"]
    for method, ratio in (("era_reference", "r0.2"), ("label_only", "r0.2"), ("alignment_only", "no_labels")):
        expected += [root / protocol / method / ratio / task / "seed0.json" for task in ("adi", "medline")
                     for protocol in ("per_task", "leave_one_out")]
    for path in expected:
        assert path.is_file(), path
    # 3 in-domain + 6 per-task + 8 leave-one-out trained runs (era_recommended_index: leave-one-out only)
    assert bench["first"]["trained"] == 17 and bench["first"]["baselines_evaluated"] == 2
    assert not (bench["out"] / ".work").exists()

    r = json.loads((root / "in_domain" / "era_reference" / "r0.2" / "seed0.json").read_text())
    assert r["seed"] == 0 and r["split_seed"] == 42 and r["label_ratio"] == 0.2 and r["global_overrides"]
    assert r["arguments"]["adaptation"]["epochs"] == 3 and r["arguments"]["seed"] == 0
    adi = r["evaluation"]["tasks"]["adi"]
    assert len(adi["per_query"]["ndcg@10"]) == adi["n_queries"] == len(adi["split"]["test"])
    assert r["environment"]["packages"]["torch"] and r["command"].startswith("era-hf")
    # the same test queries for every method (split seed 42), baselines included
    doc = json.loads((root / "baselines" / "doc.json").read_text())
    assert doc["evaluation"]["tasks"]["adi"]["split"]["test"] == adi["split"]["test"]
    loo = json.loads((root / "leave_one_out" / "label_only" / "r0.2" / "adi" / "seed0.json").read_text())
    assert loo["train_tasks"] == ["medline"] and loo["test_tasks"] == ["adi"]
    assert loo["evaluation"]["tasks"]["adi"]["split"]["test"] == adi["split"]["test"]
    assert not (root / "in_domain" / "era_recommended_index").exists()
    assert not (root / "per_task" / "era_recommended_index").exists()
    indexed = json.loads((root / "leave_one_out" / "era_recommended_index" / "r0.2" / "adi" / "seed0.json").read_text())
    assert indexed["train_tasks"] == ["medline"] and indexed["alignment_tasks"] == ["adi"]
    assert indexed["config"]["alignment_tasks"][0]["name"] == "adi"
    assert indexed["training"]["stages"]["alignment"]["counts"] == {"adi": {"documents": 82, "queries": 0}}
    own = json.loads((root / "per_task" / "era_reference" / "r0.2" / "medline" / "seed0.json").read_text())
    assert own["train_tasks"] == own["test_tasks"] == ["medline"] and own["heldout"] == "medline"

    # one progress line per (protocol, method, ratio, seed[, held-out task]) with macro nDCG@10 and a time
    runs = [ln for ln in bench["logs1"] if ln.startswith(("in_domain |", "per_task |", "leave_one_out |"))]
    assert len(runs) == 17 and sum(" | task medline" in ln for ln in runs) == 3
    assert all(re.search(r"macro nDCG@10 \d\.\d{4} \| \d+\.\d s", ln) for ln in runs), runs


def test_rerun_reuses_results(bench):
    second = bench["second"]
    assert second["trained"] == 0 and second["reused"] == 17
    assert second["baselines_evaluated"] == 0 and second["baselines_reused"] == 2
    assert sum(1 for ln in bench["logs2"] if ln.endswith("| reused")) == 17
    assert bench["seconds"][1] < bench["seconds"][0]


def test_report(bench):
    text = bench["report"].read_text()
    for heading in ("### In-domain, r = 0.2: nDCG@10", "### In-domain, r = 0.2: MAP@100",
                    "### Per task, r = 0.2: nDCG@10", "### Leave-one-out, r = 0.2: nDCG@10", "### Significance", "## Commands", "## Environment"):
        assert heading in text, heading
    for method in METHODS:
        assert f"| `{method}`" in text, method
    assert "Warning: some runs override the recipes" in text  # --quick is flagged
    # every number in the in-domain table comes from the result files
    r = json.loads((bench["out"] / PAIR / "in_domain" / "era_reference" / "r0.2" / "seed0.json").read_text())
    assert f"**{r['evaluation']['macro']['ndcg@10']:.4f}**" in text
    for png in ("ndcg10_vs_ratio__" + PAIR, "per_domain_r0.2__" + PAIR):
        path = bench["out"] / "plots" / f"{png}.png"
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
        assert f"{png}.png" in text

    from era_hf.benchmark_report import collect, load_results, significance

    rows = significance(collect(load_results(bench["out"]))[PAIR])
    pairs = {(r["protocol"], r["method"], r["versus"]) for r in rows}
    assert pairs == {(p, "era_reference", v) for p in ("in_domain", "per_task", "leave_one_out")
                     for v in ("label_only", "doc")} | {("leave_one_out", "era_recommended_index", v)
                                                       for v in ("label_only", "doc")}
    for row in rows:
        assert row["n_queries"] == 32  # 17 adi + 15 medline test queries
        for key in ("delta", "ci_low", "ci_high", "p_signflip", "p_sign"):
            assert math.isfinite(row[key]), (key, row)
        assert row["ci_low"] <= row["delta"] <= row["ci_high"]
        assert 0 < row["p_signflip"] <= 1

    # --report-only regenerates the same tables from the files alone; the optional speed hook is included
    speed = bench["out"].parent / "benchmarks" / "report_speed.py"
    speed.parent.mkdir(exist_ok=True)
    speed.write_text("def render_speed_section(results_dir):\n    return '## Speed\\n\\nspeed of ' + results_dir\n")
    (bench["out"] / "NOTES.md").write_text("- embeddings of X came from Y\n")  # copied into the report
    again = bench["out"].parent / "again.md"
    ns = _parser().parse_args(["benchmark", "--report-only", "--out", str(bench["out"]), "--report", str(again)])
    assert ns.func(ns) == 0
    strip = lambda s: re.sub(r"Generated by .*?\n|`era-hf benchmark --report-only[^`]*`", "", s)  # noqa: E731
    regenerated = again.read_text()
    assert f"## Speed\n\nspeed of {bench['out']}" in regenerated
    assert "## Notes on these results\n\n- embeddings of X came from Y\n" in regenerated
    # (the first report may carry the repository's own speed section: compare what comes before it)
    assert strip(regenerated).split("## Speed")[0] == strip(text).split("## Speed")[0].split("## Commands")[0]


def test_goals(bench, tmp_path):
    """Issue #9's checks (era_hf.benchmark_goals) against values read straight from the result files; goal 3 with
    the r = 0.2 runs copied in as the other ratios, one of them made to fall below the cheap index."""
    import shutil

    from era_hf.benchmark_goals import GOAL_RATIOS, ISSUE_MIN_MACRO, goal_checks, render_goals_section
    from era_hf.benchmark_report import collect, load_results

    def ndcg(path: Path) -> dict[str, float]:
        tasks = json.loads(path.read_text())["evaluation"]["tasks"]
        return {t: tr["metrics"]["ndcg@10"] for t, tr in tasks.items()}

    pair = bench["out"] / PAIR
    doc, query = ndcg(pair / "baselines" / "doc.json"), ndcg(pair / "baselines" / "query.json")
    era = ndcg(pair / "in_domain" / "era_reference" / "r0.2" / "seed0.json")
    loo = {t: v for task in ("adi", "medline")
           for t, v in ndcg(pair / "leave_one_out" / "era_reference" / "r0.2" / task / "seed0.json").items()}
    macro, doc_macro = np.mean(list(era.values())), np.mean(list(doc.values()))
    checks = goal_checks(collect(load_results(bench["out"]))[PAIR], "era_reference")
    assert checks["1"] == {"met": bool(macro >= max(doc_macro + 0.03, ISSUE_MIN_MACRO)),
                           "text": f"{macro:.4f} ({macro - doc_macro:+.4f})"}
    worst = min(era, key=lambda t: era[t] - query[t])
    assert checks["2"] == {"met": bool(era[worst] >= query[worst]), "text": f"{worst} {era[worst] - query[worst]:+.4f}"}
    worst = min(loo, key=lambda t: loo[t] - doc[t])
    assert checks["4"] == {"met": bool(loo[worst] - doc[worst] >= -0.005), "text": f"{worst} {loo[worst] - doc[worst]:+.4f}"}
    assert checks["3 in_domain"] == checks["3 per_task"] == {"met": None, "text": "not run"}  # only r = 0.2 ran

    # goal 3: the run copied in at every ratio, every task at the cheap index's macro + the ratio's gain
    results = tmp_path / "results"
    shutil.copytree(bench["out"], results)

    def write_ratios(gains: dict[float, float]) -> dict[str, dict]:
        for ratio, gain in gains.items():
            record = json.loads((pair / "in_domain" / "era_reference" / "r0.2" / "seed0.json").read_text())
            record["label_ratio"] = ratio
            for tr in record["evaluation"]["tasks"].values():
                tr["metrics"]["ndcg@10"] = doc_macro + gain
            target = results / PAIR / "in_domain" / "era_reference" / f"r{ratio:g}" / "seed0.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record))
        return goal_checks(collect(load_results(results))[PAIR], "era_reference")

    assert write_ratios({r: 0.02 for r in GOAL_RATIOS})["3 in_domain"] == {"met": True, "text": "r = 0.05 +0.0200"}
    assert write_ratios({0.1: -0.01})["3 in_domain"] == {"met": False, "text": "r = 0.1 -0.0100"}
    assert write_ratios({0.1: 0.0})["3 in_domain"]["met"] is True  # equal to the cheap index is no regression
    section = render_goals_section(collect(load_results(results))[PAIR])
    assert "| `era_reference` | " in section and "✓ r = 0.1 +0.0000" in section
    assert section.endswith("Methods that meet all four (a goal not run is not met): none.")
    assert "### Issue #9's goals" in bench["report"].read_text()


def test_help_lists_every_method(capsys):
    from era_hf.benchmark import METHOD_NAMES

    with pytest.raises(SystemExit):
        _parser().parse_args(["benchmark", "--help"])
    help_text = capsys.readouterr().out
    for name in METHOD_NAMES:
        assert name in help_text, name


def test_set_overrides_and_bad_input(tmp_path):
    from era_hf.benchmark import BenchmarkConfig, get_method, parse_set, training_arguments
    from era_hf.task_embeddings import EncoderPair

    assert parse_set(["adaptation.epochs=3", "alignment.lr=0.01", "head=mlp", "adaptation.early-stopping-patience=none"]) \
        == {"adaptation.epochs": 3, "alignment.lr": 0.01, "head": "mlp", "adaptation.early_stopping_patience": None}
    # a plain str field keeps "none" as its value (None would fail its validation)
    assert parse_set(["alignment.score_weight_guard=none", "query_format=None"]) \
        == {"alignment.score_weight_guard": "none", "query_format": "none"}
    for bad in (["adaptation.nope=1"], ["epochs"], ["nope=1"]):
        with pytest.raises(ERAError):
            parse_set(bad)
    with pytest.raises(ERAError, match="not allowed"):
        BenchmarkConfig(suite=["x"], overrides={"seed": 3}).validate()
    with pytest.raises(ERAError, match="unknown method"):
        BenchmarkConfig(suite=["x"], methods=["nope"]).validate()
    pair = EncoderPair(MINILM, MINILM, cache=False)
    args = training_arguments(get_method("ref+in_batch_negatives"), pair=pair, ratio=0.1, seed=2,
                              overrides={"adaptation.epochs": 3}, output_dir=str(tmp_path))
    assert args.adaptation.in_batch_negatives and args.adaptation.epochs == 3 and args.mode == "both"
    assert args.seed == 2 and args.split_seed == 42 and args.label_ratio == 0.1 and args.recipe == "reference"


def test_paired_statistics():
    from era_hf.benchmark_report import paired_test, sign_test

    assert sign_test(0, 0) == 1.0 and sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2 ** 10)
    rng = np.random.default_rng(1)
    a = {"t1": rng.random(40), "t2": rng.random(25)}
    same = paired_test(a, a)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_signflip"] == 1.0
    better = paired_test({k: v + 0.1 for k, v in a.items()}, a)
    assert better["delta"] == pytest.approx(0.1) and better["wins"] == 65 and better["p_signflip"] < 0.001
    assert better["ci_low"] == pytest.approx(0.1) and better["ci_high"] == pytest.approx(0.1)
    assert paired_test(a, a) == same  # fixed seed: reproducible


def test_query_baseline_not_measured(shared_data, tmp_path):
    """--skip-query-baseline-for: the task is recorded and reported as not measured (no encoder is loaded)."""
    from era_hf.benchmark import BenchmarkConfig, run_benchmark

    out = tmp_path / "results"
    cfg = BenchmarkConfig(suite=[str(shared_data / "adi"), str(shared_data / "medline")], out=str(out),
                          query_encoder="sentence-transformers/all-mpnet-base-v2", document_encoder=MINILM,
                          methods=["query"], skip_query_baseline_for=["adi", "medline"], seeds=[0],
                          cache_dir=_cache_dir(), report=str(tmp_path / "B.md"))
    summary = run_benchmark(cfg, log=lambda line: None)
    assert summary["baselines_evaluated"] == 1 and summary["trained"] == 0
    r = json.loads((out / "all-mpnet-base-v2__all-MiniLM-L6-v2" / "baselines" / "query.json").read_text())
    assert r["not_measured"] == ["adi", "medline"] and r["evaluation"] is None
    text = (tmp_path / "B.md").read_text()
    assert "**not measured** on adi, medline" in text
    assert "| `query` | – | not measured | not measured | not measured |" in text
