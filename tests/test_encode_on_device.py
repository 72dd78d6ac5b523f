"""benchmarks/encode_on_device.py: corpora exported here, encoded elsewhere (here: on the CPU), imported into the
embedding cache as exactly the entries that the query baseline and stage 1 read."""

from __future__ import annotations

import json
import shutil

import numpy as np

from tests.conftest import MINILM, load_benchmark_script


def _script():
    return load_benchmark_script("encode_on_device")


def test_export_encode_import_round_trip(shared_data, tmp_path, monkeypatch, capsys):
    from huggingface_hub import snapshot_download

    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task

    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "suite"
    shutil.copytree(shared_data / "adi", suite / "adi")
    xfer, arrays = tmp_path / "xfer", tmp_path / "arrays"
    script = _script()
    script.main(["export", "--suite", str(suite), "--out", str(xfer), "--encoder", MINILM, "--max-length", "64"])
    record = json.loads((xfer / "texts.json").read_text())
    assert list(record["tasks"]) == ["adi"] and record["tasks"]["adi"]["cached_here"] is False
    script.main(["encode", "--model-dir", snapshot_download(MINILM), "--texts", str(xfer / "texts.json"),
                 "--out", str(arrays), "--batch-size", "16"])
    assert [p.name for p in arrays.iterdir()] == ["adi.0.npy"]
    script.main(["import", "--texts", str(xfer / "texts.json"), "--arrays", str(arrays)])
    assert "adi: stored (82, 384)" in capsys.readouterr().out

    pair = EncoderPair(MINILM, MINILM, document_max_length=64, cache=EmbeddingCache(tmp_path / "cache"))
    corpus = np.asarray(pair.corpus(load_task(str(suite / "adi")), side="query"))
    assert pair.models_loaded == 0  # a cache hit: the imported entry is the one the pair looks up
    np.testing.assert_array_equal(corpus, np.load(arrays / "adi.0.npy"))
    script.main(["import", "--texts", str(xfer / "texts.json"), "--arrays", str(arrays)])
    assert "adi: already cached here; max |imported - cached| = 0.00e+00" in capsys.readouterr().out
