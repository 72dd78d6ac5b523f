"""The command line's promise: a user mistake is one line, ``error: …`` naming the argument or path, exit 2,
before any model loads or anything is written."""

from __future__ import annotations

import pytest
from test_training import write_beir

from era_hf import cli


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A tiny BEIR task, a file, a non-empty folder (standing in for a model directory); cwd is tmp_path."""
    write_beir(tmp_path / "task", n_docs=8, n_queries=4, name="task")
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "cut").mkdir()  # an ERA model whose head file was cut short
    (tmp_path / "cut" / "config.json").write_text('{"model_type": "era"}')
    (tmp_path / "cut" / "model.safetensors").write_bytes(b"\x10\x00\x00")
    (tmp_path / "damaged").mkdir()  # result files a report must not use: cut short, and without an evaluation
    (tmp_path / "damaged" / "seed0.json").write_text('{"format": "era_hf.benchmark/1", "pa')
    (tmp_path / "damaged" / "doc.json").write_text('{"format": "era_hf.benchmark/1", "pair": "a__b"}')
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [
    (["train", "--tasks", "task", "--label-ratio", "abc"], "argument --label-ratio: invalid float value: 'abc'"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--output", "task"], "--output 'task' is a directory"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--output", ""], "--output is empty"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--output", "afile/results.json"],
     "--output 'afile/results.json' cannot be written: 'afile' is a file, not a folder"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--device", "bogus"], "device 'bogus' is not a torch device"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--rerank-weight", "2"],
     "--rerank-weight needs --rerank-top-k"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--rerank-top-k", "1"],
     "--rerank-top-k / --rerank-weight: rerank top_k (candidates re-ranked per query) must be an integer >= 2, got 1"),
    (["evaluate", "--task", "task", "--baseline", "doc", "--document-encoder", "task"],
     "encoder 'task' is a directory but not a transformers model with its tokenizer (no config.json)"),
    (["card", "model", "--output", "task"], "--output 'task' is a directory"),
    (["export-st", "model", "afile"], "output 'afile' is a file, not a directory"),
    (["export-st", "model", ""], "the output directory is empty"),
    (["export-st", "model", "model", "--overwrite"], "is the ERA model's own directory"),
    (["export-st", "model", "task"], "task exists and is not empty; choose another output directory or pass "
                                     "--overwrite"),
    (["benchmark", "--suite", "task", "--out", "afile", "--methods", "doc"], "--out 'afile' is a file"),
    (["benchmark", "--suite", "task", "--out", "afile", "--dry-run"], "--out 'afile' is a file, not a results"),
    (["benchmark", "--suite", "task", "--out", "res", "--report", "task", "--methods", "doc"],
     "--report 'task' is a directory"),
    (["card", "afile"], "model directory 'afile' is a file, not a directory"),
    (["card", "cut"], "model.safetensors is damaged or truncated"),
    (["push", "afile", "--repo-id", "org/name"], "model directory 'afile' is a file, not a directory"),
    (["push-index", "afile", "--repo-id", "org/name"], "index directory 'afile' is a file, not a directory"),
    (["evaluate", "--task", "task", "--model", "afile"], "'afile' is a file, not an ERA model directory"),
    (["space", "--model", "model", "--index", "afile"], "index directory 'afile' is a file, not a directory"),
    (["space", "--model", "model", "--index", "afile", "--rerank-weight", "0"], "--rerank-weight needs --rerank-top-k"),
    (["space", "--model", "model", "--index", "afile", "--rerank-top-k", "50", "--rerank-weight", "-1"],
     "rerank weight (the query encoder's weight against the first search) must be a number > 0 (inf: the query "
     "encoder's order), got -1.0"),
    (["benchmark", "--report-only", "--out", "afile", "--report", "r.md"], "--out 'afile' is a file"),
    (["benchmark", "--suite", "task", "--out", "res", "--protocols", "leave_one_out", "--methods", "era_reference",
      "--dry-run"], "leave-one-out: no task outside the domain"),
    (["benchmark", "--out", "res", "--methods", "doc"], "--suite is required"),
    (["benchmark", "--report-only", "--out", "damaged", "--report", "r.md"], "no benchmark result files under"),
    (["models", "install", "--cache-dir", ""], "--cache-dir is empty"),
    (["benchmark", "--suite", "task", "--out", "res", "--set", "epochs=3", "--dry-run"],
     "per-phase fields alignment.* and adaptation.*"),
]


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exited:  # argparse's own checks exit
        return exited.code


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(argv[:1] + argv[-2:]) for argv, _ in CASES])
def test_a_user_mistake_is_one_line_and_exit_2(workdir, capsys, argv, message):
    before = {p for p in workdir.rglob("*") if p.is_file()}
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error:")] == err[-1:], err  # one error line, the last
    assert "Traceback" not in "\n".join(err) and message in err[-1], err
    assert {p for p in workdir.rglob("*") if p.is_file()} == before  # nothing written (a path check may make folders)


def test_an_os_error_the_commands_do_not_foresee_is_one_line(capsys):
    err = FileNotFoundError(2, "No such file or directory", "/data/x.jsonl")
    assert cli.os_error_line(err) == "cannot use /data/x.jsonl: No such file or directory"
    assert cli.os_error_line(OSError("Cannot find empty port")) == "cannot use: Cannot find empty port"


def test_damaged_result_files_are_named_not_used(workdir, capsys):
    assert cli.main(["benchmark", "--report-only", "--out", "damaged", "--report", "r.md"]) == 2
    err = capsys.readouterr().err
    assert "damaged/seed0.json is unreadable" in err and "damaged/doc.json is damaged (no encoder pair or " \
        "evaluation)" in err


def test_result_problem_names_what_is_missing():
    from era_hf.benchmark import result_problem

    whole = {"pair": "a__b", "evaluation": {"macro": {"ndcg@10": 0.5}, "tasks": {"t": {"metrics": {"ndcg@10": 0.5}}}}}
    assert result_problem(whole) is None
    assert result_problem([]) == "not a JSON object but a list"
    assert result_problem({"pair": "a__b"}) == "no encoder pair or evaluation"
    broken = {**whole, "evaluation": {**whole["evaluation"], "tasks": {"t": {"metrics": {"ndcg@10": "oops"}}}}}
    assert result_problem(broken) == "task 't' has no numeric metrics"
