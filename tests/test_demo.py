"""era-hf demo, the quickstart's main job: train, evaluate, index and write the card; a re-run reuses the
finished run, and a run with other settings starts over instead of failing on the old checkpoints."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from era_hf import cli


@pytest.fixture()
def warm_cache(monkeypatch):
    monkeypatch.setenv("ERA_HF_CACHE", os.environ.get("ERA_HF_TEST_CACHE",
                                                     str(Path(tempfile.gettempdir()) / "era_hf_test_cache")))


def _demo(capsys, out: Path, task: Path, *extra: str) -> tuple[str, str]:
    assert cli.main(["demo", "--task", str(task), "--output", str(out), "--alignment-docs", "20", *extra]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_demo_trains_evaluates_indexes_and_reruns(shared_data, tmp_path, capsys, warm_cache, one_torch_thread):
    out, task = tmp_path / "quickstart", shared_data / "adi"
    printed, log = _demo(capsys, out, task)
    model, index = out / "model", out / "index"
    for path in (model / "model.safetensors", model / "config.json", model / "README.md", index):
        assert path.exists(), path
    runs = json.loads((model / "eval_results.json").read_text())["runs"]
    assert [r["method"]["type"] for r in runs] == ["era", "baseline"] and runs[1]["method"]["name"] == "doc"
    era, doc = (r["tasks"]["adi"]["metrics"]["ndcg@10"] for r in runs)
    assert f"{era:.4f}" in printed and f"{doc:.4f}" in printed and f"era-hf space --model {model}" in printed
    assert json.loads((model / "config.json").read_text())["recipe"] == "recommended (modified)"  # 20 stage-1 docs
    distilled = json.loads((model / "training_log.json").read_text())["stages"]["alignment"]["init"]["distillation"]
    assert distilled["tasks"]["adi"]["documents"] == 82  # fewer than the demo's cap (500): all of them
    card = (model / "README.md").read_text()
    assert "library_name: era_hf" in card and f"{doc:.4f}" in card  # the model next to the baseline

    weights = (model / "model.safetensors").read_bytes()
    _, log = _demo(capsys, out, task)  # the same settings: the finished run is reused, not retrained
    assert "starting over" not in log and (model / "model.safetensors").read_bytes() == weights

    _, log = _demo(capsys, out, task, "--recipe", "reference")  # other settings: starts over, does not fail
    assert "cannot continue this run" in log and "starting over" in log
    assert json.loads((model / "config.json").read_text())["recipe"].startswith("reference")

    _demo(capsys, out, task, "--distill-docs", "40")  # the cap applies below the task's size
    distilled = json.loads((model / "training_log.json").read_text())["stages"]["alignment"]["init"]["distillation"]
    assert distilled["tasks"]["adi"]["documents"] == 40
