"""`accelerate launch` with 2 CPU processes (gloo) trains the same head as one process.

The 2-process run starts with only the corpus embeddings cached, so the query embeddings are
encoded sharded over the processes, gathered, and written to the cache by the main process.
Global batches are chosen so that shards are unequal and one shard is empty (7 pairs, batch 3).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training import MINILM, head_tensors, histories, shared_cache_dir

SETTINGS = ["--mode", "both", "--label-ratio", "0.2", "--alignment.epochs", "3", "--alignment.batch-size", "50",
            "--adaptation.epochs", "6", "--adaptation.batch-size", "3", "--adaptation.lr", "1e-3", "--quiet",
            "--no-plot", "--query-encoder", MINILM, "--document-encoder", MINILM]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate() -> str:
    exe = Path(sys.executable).with_name("accelerate")
    if not exe.exists():
        found = shutil.which("accelerate")
        if not found:
            pytest.skip("accelerate launcher not installed")
        exe = Path(found)
    return str(exe)


def _launch_two(out: Path, adi_dir: str, cache: Path, settings: list[str], cwd: Path) -> None:
    """``accelerate launch`` 2 CPU processes of ``era_hf.train``; asserts success and one printed line."""
    repo = str(Path(__file__).resolve().parents[1])  # era_hf importable whether installed or not
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "era_hf.train", "--tasks", adi_dir, "--output", str(out), "--cache-dir", str(cache), *settings]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(cwd))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines() == [str(out)]  # printed once, by the main process


def _train_one(out: Path, adi_dir: str, cache: Path, settings: list[str]) -> None:
    from era_hf.train import main

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # one process, in this process
        assert main(["--tasks", adi_dir, "--output", str(out), "--cache-dir", str(cache), "--cpu", *settings]) == 0
    finally:
        torch.set_num_threads(n)


def _assert_same_training(one_dir: Path, two_dir: Path) -> None:
    one, two = head_tensors(one_dir), head_tensors(two_dir)
    assert one.keys() == two.keys()
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-4, rtol=0), (k, float((one[k] - two[k]).abs().max()))
    h1, h2 = histories(one_dir), histories(two_dir)
    assert h1.keys() == h2.keys() and all(len(h1[s]) == len(h2[s]) for s in h1)  # the same epochs, every stage
    for stage in h1:
        for a, b in zip(h1[stage], h2[stage]):
            assert a.keys() == b.keys()
            assert all(abs(a[k] - b[k]) < 1e-4 for k in a)


def test_two_process_launch_matches_one_process(tmp_path, shared_data):
    from era_hf.cache import cache_key
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task

    adi_dir = str(shared_data / "adi")
    cache1 = shared_cache_dir()
    _train_one(tmp_path / "one", adi_dir, cache1, SETTINGS)

    # the 2-process run gets only the corpus entry: the queries are encoded sharded
    adi = load_task(adi_dir)
    pair = EncoderPair(MINILM, MINILM)
    key = cache_key(pair.document_fingerprint(), adi.document_texts())
    cache2 = tmp_path / "cache2"
    cache2.mkdir()
    for suffix in (".npy", ".json"):
        shutil.copy(cache1 / f"{key}{suffix}", cache2 / f"{key}{suffix}")

    _launch_two(tmp_path / "two", adi_dir, cache2, SETTINGS, tmp_path)

    log = json.loads((tmp_path / "two" / "training_log.json").read_text())
    assert log["environment"]["num_processes"] == 2
    assert log["environment"]["distributed_type"].endswith("MULTI_CPU")
    assert 0 < log["embedding_cache"]["texts_encoded_here"] < 2 * 11  # the main process's shards only
    _assert_same_training(tmp_path / "one", tmp_path / "two")

    # the sharded-and-gathered cache entries equal one-process encodings
    split = adi.split(0.2, 42)
    qids = split.train + split.val
    texts = pair.format_queries(adi, qids, "query")
    fp = pair.query_fingerprint()
    from era_hf.cache import EmbeddingCache

    got = EmbeddingCache(cache2).lookup(fp, texts)
    ref = EmbeddingCache(cache1).lookup(fp, texts)
    assert got is not None and ref is not None
    assert np.allclose(got, ref, atol=1e-5)


def test_two_processes_match_one_with_stage2_distillation(tmp_path, shared_data):
    """The stage-2 distillation term is computed whole on every process (not sharded): DDP's gradient averaging
    must leave it as one process has it."""
    adi_dir = str(shared_data / "adi")
    settings = [*SETTINGS, "--recipe", "recommended", "--alignment.distill-steps", "10",
                "--alignment.distill-batch-size", "16", "--adaptation.distill-weight", "2",
                "--adaptation.early-stopping-patience", "none"]
    cache = shared_cache_dir()
    _train_one(tmp_path / "one", adi_dir, cache, settings)
    _launch_two(tmp_path / "two", adi_dir, cache, settings, tmp_path)
    _assert_same_training(tmp_path / "one", tmp_path / "two")
    log = json.loads((tmp_path / "two" / "training_log.json").read_text())
    assert log["environment"]["num_processes"] == 2
    assert log["recipe_overrides"]["adaptation.distill_weight"]["used"] == 2.0
