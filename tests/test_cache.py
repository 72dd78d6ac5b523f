"""Embedding cache and EncoderPair: content addressing, damage detection, kill-safety, lazy loading."""

from __future__ import annotations

import json
import os
import warnings

import datasets
import numpy as np
import pytest

from era_hf.cache import CacheWarning, EmbeddingCache, cache_key, default_cache_dir, texts_sha256
from era_hf.errors import ERAError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class FakeEncoder:
    """Deterministic embeddings from the text hash; counts encode calls."""

    def __init__(self, model_id="fake/model", max_length=256, dim=8):
        self.model_id, self.max_length, self.dim = model_id, max_length, dim
        self.calls = 0

    def fingerprint(self):
        return {"model_id": self.model_id, "revision": "abc", "pooling": "mean",
                "max_length": self.max_length, "normalize": True}

    def encode(self, texts, batch_size=32, show_progress_bar=None):
        self.calls += 1
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]) \
            if texts else np.zeros((0, self.dim))
        return out.astype(np.float32)


TEXTS = ["alpha", "beta", "gamma"]


def entry_files(cache, encoder, texts):
    return cache.paths(cache_key(encoder.fingerprint(), texts))


def test_hit_on_second_call_readonly_memmap(tmp_path):
    cache, enc = EmbeddingCache(tmp_path), FakeEncoder()
    a = cache.encode(enc, TEXTS)
    b = cache.encode(enc, TEXTS)
    assert enc.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert isinstance(b, np.memmap) and not b.flags.writeable and b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, enc.encode(TEXTS))
    npy, meta = entry_files(cache, enc, TEXTS)
    record = json.loads(meta.read_text())
    assert record["n"] == 3 and record["dim"] == 8 and record["dtype"] == "float32"
    assert record["fingerprint"] == enc.fingerprint() and "era_hf_version" in record and "created" in record
    # lookup answers without an encoder
    assert cache.lookup(enc.fingerprint(), TEXTS) is not None
    assert cache.lookup(enc.fingerprint(), ["unseen"]) is None


def test_key_depends_on_order_model_and_settings(tmp_path):
    fp = FakeEncoder().fingerprint()
    base = cache_key(fp, TEXTS)
    assert cache_key(fp, list(reversed(TEXTS))) != base
    assert cache_key(FakeEncoder(model_id="other/model").fingerprint(), TEXTS) != base
    assert cache_key(FakeEncoder(max_length=128).fingerprint(), TEXTS) != base
    assert cache_key({**fp, "revision": "def"}, TEXTS) != base
    assert cache_key(dict(reversed(list(fp.items()))), TEXTS) == base  # dict order does not matter
    # no collisions by concatenation
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"]) != texts_sha256(["abc"])
    cache, e1, e2 = EmbeddingCache(tmp_path), FakeEncoder(), FakeEncoder(max_length=128)
    cache.encode(e1, TEXTS)
    cache.encode(e2, TEXTS)
    cache.encode(e1, TEXTS[::-1])
    assert (e1.calls, e2.calls, cache.misses, cache.hits) == (2, 1, 3, 0)


def test_default_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ERA_HF_CACHE", str(tmp_path / "c"))
    assert EmbeddingCache().root == tmp_path / "c" == default_cache_dir()
    monkeypatch.delenv("ERA_HF_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "era_hf", "embeddings")
    with pytest.raises(ERAError, match="verify"):
        EmbeddingCache(tmp_path, verify="nope")


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta_n", "meta_garbage", "meta_missing", "npy_missing"])
@pytest.mark.parametrize("verify", ["full", "header"])
def test_damaged_entry_detected_and_recomputed(tmp_path, damage, verify):
    cache, enc = EmbeddingCache(tmp_path, verify=verify), FakeEncoder(dim=64)
    texts = [f"text {i}" for i in range(50)]
    good = np.array(cache.encode(enc, texts))
    npy, meta = entry_files(cache, enc, texts)
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "flip":
        if verify == "header":
            pytest.skip("a same-size bit flip needs the checksum")
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "meta_n":
        record = json.loads(meta.read_text())
        record["n"] = 49
        meta.write_text(json.dumps(record))
    elif damage == "meta_garbage":
        meta.write_text("{not json")
    elif damage == "meta_missing":
        meta.unlink()
    elif damage == "npy_missing":
        npy.unlink()
    with pytest.warns(CacheWarning):
        again = cache.encode(enc, texts)
    assert enc.calls == 2 and cache.corrupt == 1
    np.testing.assert_array_equal(again, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.encode(enc, texts), good)  # repaired: a clean hit
    assert enc.calls == 2


def test_leftover_temp_files_are_ignored_and_cleaned(tmp_path):
    cache, enc = EmbeddingCache(tmp_path), FakeEncoder()
    npy, meta = entry_files(cache, enc, TEXTS)
    tmp_path.mkdir(exist_ok=True)
    # what a process killed mid-write leaves: temp files of both writes (never renamed)
    stale_npy = tmp_path / f".{npy.name}.x1y2.tmp"
    stale_json = tmp_path / f".{meta.name}.x3y4.tmp"
    stale_npy.write_bytes(b"\x93NUMPY partial")
    stale_json.write_text('{"n": 3')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.lookup(enc.fingerprint(), TEXTS) is None
        cache.encode(enc, TEXTS)
        assert cache.lookup(enc.fingerprint(), TEXTS) is not None
    assert cache.clean(older_than=3600) == 0  # fresh temp files are left alone (a writer may own them)
    old = 1_000_000_000
    os.utime(stale_npy, (old, old))
    os.utime(stale_json, (old, old))
    assert cache.clean(older_than=3600) == 2
    assert not stale_npy.exists() and npy.exists() and meta.exists()


def test_interrupted_store_leaves_no_entry(tmp_path, monkeypatch):
    cache, enc = EmbeddingCache(tmp_path), FakeEncoder()
    import era_hf.cache as cache_mod

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for a kill between the array and the commit marker

    monkeypatch.setattr(cache_mod, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.encode(enc, TEXTS)
    monkeypatch.undo()
    npy, meta = entry_files(cache, enc, TEXTS)
    assert npy.exists() and not meta.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.warns(CacheWarning, match="no metadata"):
        cache.encode(enc, TEXTS)
    assert enc.calls == 2 and meta.exists()


def test_store_validates_and_unwritable_cache_still_works(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ERAError, match="shape"):
        cache.store(FakeEncoder().fingerprint(), TEXTS, np.zeros((2, 4)))
    with pytest.raises(ERAError, match="single string"):
        cache.lookup(FakeEncoder().fingerprint(), "alpha")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = EmbeddingCache(blocker / "sub")  # parent is a file: cannot be created
    enc = FakeEncoder()
    with pytest.warns(CacheWarning, match="not writable"):
        out = bad.encode(enc, TEXTS)
    assert out.shape == (3, 8)
    empty = EmbeddingCache(tmp_path / "e").encode(enc, [])
    assert empty.shape == (0, 8)


# ---------------------------------------------------------------------- EncoderPair (real MiniLM)
def tiny_task():
    from era_hf.tasks import RetrievalTask

    return RetrievalTask(
        name="tiny", domain="demo", instruction="Find the passage about the topic.",
        corpus=datasets.Dataset.from_dict({"_id": ["d1", "d2", "d3"], "title": ["Wings", "", "Blood"],
                                           "text": ["Lift comes from pressure differences.",
                                                    "Turbulent boundary layers.",
                                                    "Heparin activates antithrombin."]}),
        queries=datasets.Dataset.from_dict({"_id": ["q1", "q2"], "text": ["why do wings lift?", "anticoagulants"],
                                            "instruction": ["", "Find medical passages."]}),
        qrels={"q1": {"d1": 1}, "q2": {"d3": 1}}, source="test", revision=None)


def test_encoder_pair_warm_cache_loads_no_model(tmp_path, minilm_encoder):
    from era_hf.task_embeddings import EncoderPair

    task = tiny_task()
    cache = EmbeddingCache(tmp_path)
    pair = EncoderPair(MINILM, MINILM, query_format="reference", cache=cache, device="cpu")
    # fingerprints are built without a model and match the loaded encoder's (shared cache keys)
    assert pair.document_fingerprint() == minilm_encoder.fingerprint()
    assert pair.models_loaded == 0
    assert pair.format_queries(task, ["q1", "q2"], side="query") == [
        "Instruct: Find the passage about the topic.\nQuery: why do wings lift?",
        "Instruct: Find medical passages.\nQuery: anticoagulants"]
    assert pair.format_queries(task, ["q2"], side="document") == ["anticoagulants"]
    docs = pair.corpus(task)
    q = pair.queries(task, ["q2", "q1"], side="query")
    a = pair.queries(task, ["q1"], side="document")
    assert docs.shape == (3, 384) and q.shape == (2, 384) and a.shape == (1, 384)
    np.testing.assert_allclose(docs, minilm_encoder.encode(task.document_texts()), atol=1e-5)
    np.testing.assert_allclose(a, minilm_encoder.encode(["why do wings lift?"]), atol=1e-5)
    assert pair.models_loaded == 2  # query side and document side are separate encoders

    warm = EncoderPair(MINILM, MINILM, query_format="reference", cache=EmbeddingCache(tmp_path))
    np.testing.assert_array_equal(warm.corpus(task), docs)
    np.testing.assert_array_equal(warm.queries(task, ["q2", "q1"]), q)
    np.testing.assert_array_equal(warm.queries(task, ["q1"], side="document"), a)
    assert warm.models_loaded == 0 and warm.loaded == {"query": False, "document": False}
    assert warm.cache.hits == 3 and warm.cache.misses == 0
    # the query-encoder corpus (query baseline) uses the document max length: same key as the doc side here
    np.testing.assert_array_equal(warm.corpus(task, side="query"), docs)
    assert warm.models_loaded == 0
    # a different max length is a different entry
    other = EncoderPair(MINILM, MINILM, document_max_length=64, cache=EmbeddingCache(tmp_path))
    assert other.document_fingerprint() != pair.document_fingerprint()
    assert not other.cache.contains(other.document_fingerprint(), task.document_texts())
    described = warm.describe()
    assert described["document_encoder"]["revision"] and described["query_format"] == "reference"


def test_encoder_pair_from_config_and_errors(tmp_path):
    from era_hf import ERAConfig
    from era_hf.task_embeddings import EncoderPair

    cfg = ERAConfig(query_encoder=MINILM, document_encoder=MINILM, query_dim=384, query_format="none",
                    query_max_length=64)
    pair = EncoderPair.from_config(cfg, cache=False)
    assert pair.cache is None and pair.query_format == "none" and pair.query_max_length == 64
    assert EncoderPair("x/qwen3-embedding-0.6b", MINILM, cache=False).query_format == "reference"  # auto
    with pytest.raises(ERAError, match="side"):
        pair.corpus(tiny_task(), side="both")
    missing = EncoderPair("nobody/not-a-model", MINILM, cache=EmbeddingCache(tmp_path))
    with pytest.raises(ERAError, match="not-a-model"):
        missing.query_fingerprint()
