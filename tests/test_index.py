"""DocumentIndex: build / save / load / search, HNSW vs flat, compatibility and damage errors."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from era_hf.errors import ERAError
from era_hf.index import CONFIG_FILE, DOCUMENTS_FILE, INDEX_FILE, DocumentIndex

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
IDS = ["lift", "heparin", "turbulence", "python"]
TITLES = ["Wings", "", "Boundary layers", "Code"]
TEXTS = ["Lift on a wing comes from the pressure difference between its surfaces.",
         "Heparin prevents blood clots by activating antithrombin.",
         "Boundary layers become turbulent above a critical Reynolds number.",
         "The json module parses JSON documents in Python."]


@pytest.fixture(scope="module")
def built(minilm_encoder, tmp_path_factory):
    from era_hf.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"))
    return DocumentIndex.build(minilm_encoder, IDS, TEXTS, TITLES, cache=cache)


def test_build_save_load_search_roundtrip(built, minilm_encoder, tmp_path):
    queries = minilm_encoder.encode(["why does an airfoil generate lift?", "which anticoagulant uses antithrombin?"])
    scores, ids = built.search(queries, k=2)
    assert ids[0][0] == "lift" and ids[1][0] == "heparin"
    assert scores.dtype == np.float32 and scores.shape == (2, 2) and np.all(np.diff(scores, axis=1) <= 0)
    # cosine: the doc embedding (title + text) against itself scores 1
    doc = minilm_encoder.encode(["Wings " + TEXTS[0]])
    s, i = built.search(doc, k=1)
    assert i == [["lift"]] and s[0, 0] == pytest.approx(1.0, abs=1e-5)

    out = built.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX_FILE, DOCUMENTS_FILE, CONFIG_FILE])
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["document_encoder"] == MINILM and config["document_encoder_revision"] == minilm_encoder.revision
    assert config["dim"] == 384 and config["num_documents"] == 4 and config["kind"] == "flat"
    assert config["pooling"] == "mean" and config["max_length"] == 256 and config["normalized"] is True
    assert config["era_hf_version"]
    rows = [json.loads(line) for line in (out / DOCUMENTS_FILE).read_text().splitlines()]
    assert rows[0] == {"id": "lift", "title": "Wings", "text": TEXTS[0]}

    loaded = DocumentIndex.load(out)
    s2, i2 = loaded.search(queries, k=2)
    assert i2 == ids
    np.testing.assert_allclose(s2, scores, atol=1e-6)
    assert loaded.titles == TITLES and loaded.texts == TEXTS and loaded.encoder_info["document_encoder"] == MINILM
    # k is capped at the corpus size; a single vector works too
    s3, i3 = loaded.search(queries[0], k=50)
    assert s3.shape == (1, 4) and sorted(i3[0]) == sorted(IDS)
    with pytest.raises(ERAError, match="k must be"):
        loaded.search(queries, k=0)
    with pytest.raises(ERAError, match=r"shape \(n, 384\)"):
        loaded.search(np.ones((1, 768), np.float32), k=1)


def test_build_from_pair_or_model_config(built, tmp_path):
    from era_hf import ERAConfig
    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair

    pair = EncoderPair(document_encoder=MINILM, cache=EmbeddingCache(tmp_path))
    via_pair = DocumentIndex.build(pair, IDS, TEXTS, TITLES)
    assert pair.loaded == {"query": False, "document": True}
    assert via_pair.encoder_info == built.encoder_info
    via_config = DocumentIndex.build(ERAConfig(document_encoder=MINILM), IDS, TEXTS, TITLES,
                                     cache=EmbeddingCache(tmp_path))
    q = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    for other in (via_pair, via_config):
        s, i = other.search(q, k=4)
        assert i == built.search(q, k=4)[1]
        np.testing.assert_allclose(s, built.search(q, k=4)[0], atol=1e-5)
    with pytest.raises(ERAError, match="cannot build an index"):
        DocumentIndex.build(object(), IDS, TEXTS)


def test_hnsw_agrees_with_flat(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 32)).astype(np.float32)
    ids = [f"d{i}" for i in range(300)]
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    flat = DocumentIndex.from_embeddings(emb, ids, kind="flat", encoder_info={"document_encoder": "x"})
    hnsw = DocumentIndex.from_embeddings(emb, ids, kind="hnsw", M=16, ef_search=300,
                                         encoder_info={"document_encoder": "x"})
    assert flat.ef_search is None and hnsw.ef_search == 300
    fs, fi = flat.search(queries, k=10)
    hs, hi = hnsw.search(queries, k=10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fi, hi)])
    assert overlap >= 0.95
    # the flat index is exact: matches numpy cosine
    norm = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best = np.argsort(-(qn @ norm.T), axis=1, kind="stable")[:, :10]
    assert fi == [[ids[j] for j in row] for row in best]
    np.testing.assert_allclose(fs, np.sort(qn @ norm.T, axis=1)[:, ::-1][:, :10], atol=1e-5)
    hnsw.ef_search = 64
    loaded = DocumentIndex.load(hnsw.save(tmp_path / "h"))
    assert loaded.kind == "hnsw" and loaded.ef_search == 64 and loaded.hnsw["M"] == 16
    assert loaded.search(queries, k=10)[1] == hnsw.search(queries, k=10)[1]
    with pytest.raises(ERAError, match="ef_search"):
        flat.ef_search = 10
    with pytest.raises(ERAError, match="kind"):
        DocumentIndex.from_embeddings(emb, ids, kind="ivf")


def test_compatibility_errors_name_both_encoders(built):
    from era_hf import ERAConfig

    built.check_compatible(MINILM, 384)
    with pytest.raises(ERAError) as err:
        built.check_compatible("BAAI/bge-base-en-v1.5", 768)
    assert MINILM in str(err.value) and "BAAI/bge-base-en-v1.5" in str(err.value) and "768" in str(err.value)
    with pytest.raises(ERAError, match="384"):
        built.check_compatible(MINILM, 768)
    built.check_model(ERAConfig(document_encoder=MINILM, document_dim=384))
    with pytest.raises(ERAError, match="other/doc-model"):
        built.check_model(ERAConfig(document_encoder="other/doc-model", document_dim=384))
    with pytest.warns(UserWarning, match="revision"):
        built.check_compatible(MINILM, 384, revision="0" * 40)


def test_bad_documents():
    emb = np.eye(3, dtype=np.float32)
    with pytest.raises(ERAError, match="duplicate document id 'a'"):
        DocumentIndex.from_embeddings(emb, ["a", "b", "a"], ["x", "y", "z"])
    with pytest.raises(ERAError, match="empty corpus"):
        DocumentIndex.from_embeddings(np.zeros((0, 3), np.float32), [], [])
    with pytest.raises(ERAError, match="shape"):
        DocumentIndex.from_embeddings(emb, ["a", "b"], ["x", "y"])
    with pytest.raises(ERAError, match="NaN"):
        DocumentIndex.from_embeddings(np.full((1, 3), np.nan, np.float32), ["a"], ["x"])
    with pytest.raises(ERAError, match="titles"):
        DocumentIndex.from_embeddings(emb, ["a", "b", "c"], ["x", "y", "z"], titles=["t"])


def test_empty_and_duplicate_corpus_with_encoder(minilm_encoder):
    with pytest.raises(ERAError, match="empty corpus"):
        DocumentIndex.build(minilm_encoder, [], [])
    with pytest.raises(ERAError, match="duplicate document id 'd'"):
        DocumentIndex.build(minilm_encoder, ["d", "d"], ["one", "two"])


def test_damaged_or_incomplete_directories(built, tmp_path):
    def fresh(name):
        return built.save(tmp_path / name)

    d = fresh("missing_docs")
    (d / DOCUMENTS_FILE).unlink()
    with pytest.raises(ERAError, match=DOCUMENTS_FILE):
        DocumentIndex.load(d)
    d = fresh("missing_config")
    (d / CONFIG_FILE).unlink()
    with pytest.raises(ERAError, match=CONFIG_FILE):
        DocumentIndex.load(d)
    d = fresh("truncated_index")
    (d / INDEX_FILE).write_bytes((d / INDEX_FILE).read_bytes()[:100])
    with pytest.raises(ERAError, match=INDEX_FILE):
        DocumentIndex.load(d)
    with pytest.raises(ERAError, match=INDEX_FILE):  # without the checksum, faiss's own error is wrapped
        DocumentIndex.load(d, verify=False)
    d = fresh("bad_docs")
    (d / DOCUMENTS_FILE).write_text('{"id": "lift"}\nnot json\n')
    with pytest.raises(ERAError, match=f"{DOCUMENTS_FILE}:2"):
        DocumentIndex.load(d, verify=False)
    d = fresh("newer")
    config = json.loads((d / CONFIG_FILE).read_text())
    config["era_hf_version"] = "99.0.0"
    (d / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ERAError, match="upgrade era_hf"):
        DocumentIndex.load(d)
    config["era_hf_version"], config["format"] = "0.1.0", 2
    (d / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ERAError, match="upgrade era_hf"):
        DocumentIndex.load(d)
    with pytest.raises(ERAError, match="does not exist"):
        DocumentIndex.load(tmp_path / "nowhere")
    # no leftover temp files from the atomic writes
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_load_from_hub_dataset_repo(built, tmp_path):
    """Push an index directory as a dataset repo to the test Hub, load it by id at a pinned revision.

    A subprocess: ``huggingface_hub`` reads ``HF_ENDPOINT`` at import (see tests/hub_server.py).
    """
    try:
        from tests.hub_server import DEFAULT_TOKEN, HubServer, run_client
    except ImportError:
        from hub_server import DEFAULT_TOKEN, HubServer, run_client

    d = built.save(tmp_path / "idx")
    code = textwrap.dedent(f"""
        from huggingface_hub import HfApi
        from era_hf.index import DocumentIndex, CONFIG_FILE
        from era_hf.errors import ERAError
        api = HfApi()
        repo = api.create_repo("test-user/tiny-index", repo_type="dataset").repo_id
        first = api.upload_folder(folder_path={str(d)!r}, repo_id=repo, repo_type="dataset").oid
        api.delete_file(CONFIG_FILE, repo_id=repo, repo_type="dataset")  # main is now incomplete
        idx = DocumentIndex.load(repo, revision=first)
        print(len(idx), idx.doc_ids[0], idx.encoder_info["document_encoder"], idx.source_path)
        for ref in (repo, "test-user/no-such-index"):
            try:
                DocumentIndex.load(ref)
            except ERAError as err:
                print("ERR", err)
    """)
    with HubServer(tmp_path / "hub", tokens={DEFAULT_TOKEN}) as server:
        repo_root = str(Path(__file__).resolve().parents[1])  # era_hf importable even when not installed
        pythonpath = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p)
        out = run_client(server, code, tmp_path / "hf_home", token=DEFAULT_TOKEN,
                         extra_env={"PYTHONPATH": pythonpath}).stdout
    assert f"4 lift {MINILM} {tmp_path / 'hf_home'}" in out
    assert f"{CONFIG_FILE} is missing" in out
    assert "ERR cannot fetch index dataset repo 'test-user/no-such-index'" in out
