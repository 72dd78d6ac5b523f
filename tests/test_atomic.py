"""era_hf/atomic.py and ERAModel.save_pretrained: a failed or killed write never loses what was there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from era_hf.atomic import atomic_open, atomic_path, atomic_write_json, atomic_write_text


def _temp_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"ndcg@10": 0.5})
    old = target.read_text()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target) as f:
            f.write('{"ndcg@10": 0.')
            raise RuntimeError("disk full")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not json": object()})
    assert target.read_text() == old
    assert _temp_files(tmp_path) == []  # the temp file went with the failure


def test_a_writer_that_needs_a_filename_publishes_only_on_success(tmp_path):
    import numpy as np

    target = tmp_path / "vectors.npy"
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as tmp_file:
            np.save(tmp_file, np.arange(3), allow_pickle=False)
        assert not target.exists() and tmp.parent == tmp_path
    assert np.load(target, allow_pickle=False).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError("writer failed")
    assert np.load(target, allow_pickle=False).tolist() == [0, 1, 2]


def test_new_files_get_the_mode_a_plain_open_would(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_killed_writer_leaves_the_previous_file(tmp_path):
    target = tmp_path / "index.faiss"
    target.write_bytes(b"previous")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from era_hf.atomic import atomic_open
        with atomic_open({str(target)!r}, "wb") as f:
            f.write(b"x" * 1_000_000)
            f.flush()
            print("written", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert target.read_bytes() == b"previous"
    leftovers = _temp_files(tmp_path)  # a kill cannot clean up; the orphan is hidden and never read
    assert len(leftovers) == 1 and leftovers[0].startswith(".index.faiss.")


def test_save_pretrained_moves_complete_files_into_place(tmp_path, monkeypatch):
    import torch

    from era_hf import ERAConfig, ERAModel
    from era_hf import modeling_era

    config = ERAConfig(query_encoder="q", document_encoder="d", query_dim=8, document_dim=4)
    model = ERAModel(config)
    model.save_pretrained(tmp_path)
    saved = (tmp_path / "model.safetensors").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".era-model-")]
    with torch.no_grad():
        next(model.head.parameters()).add_(1.0)
    real_replace, moved = os.replace, []

    def fail_on_weights(src, dst):  # a crash while the new files are moved into place
        if str(dst).endswith("model.safetensors"):
            raise OSError("killed")
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(modeling_era.os, "replace", fail_on_weights)
    with pytest.raises(OSError, match="killed"):
        model.save_pretrained(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "model.safetensors").read_bytes() == saved  # the old weights, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".era-model-")]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() != saved
    reloaded = ERAModel(ERAConfig.from_pretrained(tmp_path))
    from safetensors.torch import load_file

    reloaded.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    for a, b in zip(reloaded.head.parameters(), model.head.parameters()):
        assert torch.equal(a, b)
