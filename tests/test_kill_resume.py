"""A training process killed (SIGKILL) mid-run leaves a readable checkpoint, and --resume finishes the run
with exactly the head an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import shared_cache_dir

from era_hf.training.state_io import load_state
from tests.conftest import MINILM


def _command(shared_data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "era_hf.train", "--tasks", str(shared_data / "adi"), "--query-encoder", MINILM,
            "--document-encoder", MINILM, "--output", str(out), "--alignment.epochs", "3",
            "--adaptation.epochs", "150", "--adaptation.checkpoint-every", "1", "--adaptation.batch-size", "2",
            "--cache-dir", str(shared_cache_dir()), "--quiet", "--no-plot", *extra]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_training_then_resume(tmp_path, shared_data):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    full = tmp_path / "full"
    subprocess.run(_command(shared_data, full), env=env, check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(shared_data, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = out / "checkpoints" / "adaptation" / "training_state.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more epochs: the kill lands mid-epoch or mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    state = load_state(marker.parent, "training_state")  # the last good checkpoint is readable
    assert 1 <= state["loop"]["epoch"] < 150 and not state["complete"]
    assert not (out / "model.safetensors").exists()

    subprocess.run(_command(shared_data, out, "--resume"), env=env, check=True, capture_output=True, timeout=600)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_state_killed_between_tensor_and_marker_writes_loads_the_previous_state(tmp_path):
    from era_hf.errors import ERAError
    from era_hf.training.state_io import save_state

    old = {"epoch": 3, "head": {"w": torch.zeros(4, 4)}, "rng": (1, [2, 3])}
    new = {"epoch": 4, "head": {"w": torch.ones(4, 4)}, "rng": (5, [6, 7])}
    save_state(tmp_path, "training_state", new)
    new_tensors = next(tmp_path.glob("training_state.*.safetensors")).read_bytes()
    save_state(tmp_path, "training_state", old)
    # a kill after the next save's tensor file was renamed into place but before its marker was
    orphan = tmp_path / "training_state.deadbeef0000.safetensors"
    orphan.write_bytes(new_tensors)
    state = load_state(tmp_path, "training_state")
    assert state["epoch"] == 3 and torch.equal(state["head"]["w"], torch.zeros(4, 4)) and state["rng"] == (1, [2, 3])
    save_state(tmp_path, "training_state", new)  # the next save removes the orphan
    assert not orphan.exists() and len(list(tmp_path.glob("training_state.*.safetensors"))) == 1
    assert load_state(tmp_path, "training_state")["epoch"] == 4

    tensors = next(tmp_path.glob("training_state.*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(ERAError, match="sha256"):
        load_state(tmp_path, "training_state")
