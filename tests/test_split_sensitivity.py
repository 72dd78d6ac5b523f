"""benchmarks/split_sensitivity.py: the benchmark's comparisons repeated on other test splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from era_hf.cache import EmbeddingCache
from era_hf.evaluation import evaluate_suite
from era_hf.task_embeddings import EncoderPair
from era_hf.tasks import load_task
from tests.conftest import MINILM, MPNET, load_benchmark_script, numpy_ndcg_per_query

FAST = ["--set", "alignment.distill_steps=5", "--set", "adaptation.epochs=2"]


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("split_sensitivity")


def test_zero_shot_and_trained_splits_are_measured_and_merged_into_one_section(script, shared_data, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "results" / "split_sensitivity"
    record = script.main(["--suite", str(shared_data), "--tasks", "adi", "--out", str(folder / "a.json"),
                          "--split-seeds", "42", "7", "--seeds", "0", "--protocols", "per_task",
                          "--zero-shot-splits", "6", *FAST])
    assert json.loads((folder / "a.json").read_text())["results"] == record["results"]
    r = record["results"]
    assert r["overrides"] == {"alignment.distill_steps": 5, "adaptation.epochs": 2}

    adi = load_task(str(shared_data / "adi"))
    pair = EncoderPair(MPNET, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    judged = adi.judged_query_ids()
    doc, query = (numpy_ndcg_per_query(pair, adi, judged, side) for side in ("document", "query"))

    def gap(ids) -> float:
        return float(np.mean([query[q] - doc[q] for q in ids]))

    zs = r["zero_shot"]["tasks"]["adi"]
    gaps = [gap(adi.split(0.2, s).test) for s in range(6)]
    assert zs["benchmark_split"] == pytest.approx(gap(adi.split(0.2, 42).test), abs=1e-6)
    assert zs["all_judged"] == pytest.approx(gap(adi.judged_query_ids()), abs=1e-6)
    assert zs["mean"] == pytest.approx(np.mean(gaps), abs=1e-6)
    assert zs["share_query_higher"] == pytest.approx(np.mean(np.array(gaps) > 0))

    for seed in (42, 7):
        test = adi.split(0.2, seed).test
        entry = r["splits"][str(seed)]
        assert entry["n_test"] == {"adi": len(test)}
        assert entry["doc"]["adi"] == pytest.approx(np.mean([doc[q] for q in test]), abs=1e-6)
        assert entry["query"]["macro"] == pytest.approx(np.mean([query[q] for q in test]), abs=1e-6)
        assert len(entry["protocols"]["per_task"]) == 1 and 0 < entry["protocols"]["per_task"][0]["adi"] <= 1
        hybrid = evaluate_suite("doc+lexical", [adi], pair, seed=seed)  # weight picked on this split's queries
        assert entry["doc+lexical"]["adi"] == pytest.approx(hybrid["macro"]["ndcg@10"], abs=1e-6)
        assert entry["doc+lexical_weight"] == hybrid["lexical_weight"]
    assert set(adi.split(0.2, 7).test) != set(adi.split(0.2, 42).test)  # the splits differ, so the rows can

    # a second file: another split seed of the same configuration joins its table; other overrides get their own
    other = json.loads((folder / "a.json").read_text())
    other["results"]["splits"] = {"9": other["results"]["splits"]["7"]}
    (folder / "b.json").write_text(json.dumps(other))
    other["results"]["overrides"] = {"alignment.distill_steps": 6}
    (folder / "c.json").write_text(json.dumps(other))
    # a third: split 42 of the same configuration in another protocol joins that split's row of its own table
    other = json.loads((folder / "a.json").read_text())
    split42 = other["results"]["splits"]["42"]
    split42["protocols"] = {"in_domain": split42["protocols"]["per_task"]}
    (folder / "d.json").write_text(json.dumps(other))
    section = script.render_split_sensitivity_section(tmp_path / "results")
    assert section.startswith("## How much the verdicts depend on the test split")
    assert "- `a.json`: `" in section and "- `b.json`: `" in section and "**Zero-shot, 6 random splits**" in section
    assert f"| adi | {zs['all_judged']:+.4f} | {zs['mean']:+.4f} ± {zs['sd']:.4f} |" in section
    fast = "**`era_recommended`, `adaptation.epochs=2`, `alignment.distill_steps=5`, {}, r = 0.2**"
    in_domain = section[section.index(fast.format("in_domain")):section.index(fast.format("per_task"))]
    assert [line.split(" | ")[0] for line in in_domain.splitlines() if line[2:3].isdigit()] == ["| 42"]
    table = section[section.index(fast.format("per_task")):section.index("`alignment.distill_steps=6`")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 42", "| 7", "| 9"]  # the benchmark's split first
    e42 = r["splits"]["42"]
    era = e42["protocols"]["per_task"][0]["adi"]
    hybrid = f"{e42['doc+lexical']['macro']:.4f} (BM25 × {e42['doc+lexical_weight']:g})"
    assert rows[0].startswith(f"| 42 | 1 | {e42['doc']['macro']:.4f} | {e42['query']['macro']:.4f} | {hybrid} | "
                              f"{era:.4f} | {era - e42['doc']['adi']:+.4f} |")
    assert rows[0].endswith(f" | {era - e42['doc+lexical']['macro']:+.4f} |")
    assert "| mean of 3 |" in table and "| splits ≥ 0 |" in table
    gaps = [e["protocols"]["per_task"][0]["adi"] - e["doc"]["adi"] for e in (r["splits"]["7"], e42)]
    assert f"| worst of 3 | | | | | | {min(gaps):+.4f} |" in table
    # a file from before the doc+lexical baseline was scored here keeps the table it had
    old = json.loads((folder / "a.json").read_text())
    old["results"]["overrides"] = {"alignment.distill_steps": 7}
    for entry in old["results"]["splits"].values():
        del entry["doc+lexical"], entry["doc+lexical_weight"]
    (folder / "e.json").write_text(json.dumps(old))
    old_table = script.render_split_sensitivity_section(tmp_path / "results")
    old_table = old_table[old_table.index("`alignment.distill_steps=7`"):]
    assert "doc+lexical" not in old_table and f"| 42 | 1 | {e42['doc']['macro']:.4f} | {e42['query']['macro']:.4f} | " \
        f"{era:.4f} |" in old_table
    assert script.render_split_sensitivity_section(tmp_path / "nothing") == ""


def test_the_split_seed_reaches_the_training_arguments(shared_data, tmp_path):
    from era_hf.benchmark import SPLIT_SEED, get_method, training_arguments

    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    method = get_method("era_recommended")
    kwargs = dict(pair=pair, ratio=0.2, seed=0, overrides={}, output_dir=str(tmp_path))
    assert training_arguments(method, **kwargs).split_seed == SPLIT_SEED == 42
    assert training_arguments(method, **kwargs, split_seed=7).split_seed == 7


def test_bad_arguments_are_refused_by_name_before_anything_is_written(script, shared_data, tmp_path, capsys):
    suite = ["--suite", str(shared_data)]
    for argv, said in (([*suite, "--split-seeds", "1", "1"], "unique"),
                       ([*suite, "--zero-shot-splits", "0"], "at least 1"),
                       ([*suite, "--method", "nope"], "--method: unknown benchmark method 'nope'"),
                       ([*suite, "--method", "alignment_only"], "trained on labels"),
                       ([*suite, "--method", "era_recommended_index"], "--protocols leave_one_out alone"),
                       ([*suite, "--set", "split_seed=3"], "split_seed: fixed by this benchmark"),
                       ([*suite, "--set", "alignment.nope=1"], "unknown field"),
                       (["--suite", str(tmp_path / "nope")], "--suite")):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*argv, "--out", str(tmp_path / "out.json")])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_leave_one_out_trains_on_the_other_tasks_and_scores_the_held_out_one(script, shared_data, tmp_path,
                                                                            monkeypatch):
    """``_common.train_and_score``'s leave_one_out, the protocol split_sensitivity.py adds to in_domain / per_task."""
    import shutil

    from era_hf.benchmark import get_method, parse_set, training_arguments
    from era_hf.evaluation import ERAMethod, evaluate_suite

    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))

    tasks = {}
    for name in ("adi", "adi_b"):  # two collections: adi, and a copy of it under another name and domain
        shutil.copytree(shared_data / "adi", tmp_path / name)
        meta = json.loads((tmp_path / name / "meta.json").read_text())
        (tmp_path / name / "meta.json").write_text(json.dumps({**meta, "name": name, "domain": f"domain {name}"}))
        tasks[name] = load_task(str(tmp_path / name))
    pair = EncoderPair(MINILM, MINILM, cache=EmbeddingCache(tmp_path / "cache"))
    method, overrides = get_method("era_recommended"), parse_set(FAST[1::2])
    runs = []

    def make_args(trained_on: list[str]):
        runs.append(trained_on)
        return training_arguments(method, pair=pair, ratio=0.2, seed=0, overrides=overrides,
                                  output_dir=str(tmp_path / "out" / "+".join(trained_on)))

    def score(model, scored: list[str]) -> dict[str, float]:
        runs[-1] = (runs[-1], scored)
        ev = evaluate_suite(ERAMethod(model), [tasks[n] for n in scored], pair)
        return {n: ev["tasks"][n]["metrics"]["ndcg@10"] for n in scored}

    values = script.train_and_score("leave_one_out", tasks, make_args, score)
    assert runs == [(["adi_b"], ["adi"]), (["adi"], ["adi_b"])]
    assert set(values) == {"adi", "adi_b", "macro"}
    assert values["macro"] == pytest.approx((values["adi"] + values["adi_b"]) / 2)
