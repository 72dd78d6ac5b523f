"""The Gradio search Space: API through gradio_client, errors, malformed requests, batching, load.

One small app is shared by this module and ``test_space_browser.py`` (see :func:`get_space`):
a MiniLM → MiniLM ERA model (a near-identity linear head, so ERA and the baseline differ a
little) over a fixed index of 48 ADI documents, launched in-process on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import MINILM, SHARED_DATA

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

K = 5
N_DOCS = 48  # the first 48 ADI documents: small enough to embed in a few seconds
KNOWN_QUERY = "computer search of chemical patents"
KNOWN_TOP = "48"  # "computerized search of the u. s. chemical patent literature"
_CONFIG_ATTR = "_era_hf_space"  # the shared app lives on the pytest config (one per session)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_model_and_index(root: Path) -> tuple[Path, Path]:
    """Save a MiniLM → MiniLM model (identity + small noise head) and an ADI index under ``root``."""
    import torch

    from era_hf import ERAModel
    from era_hf.encoders import DocumentEncoder
    from era_hf.index import DocumentIndex

    meta = json.loads((SHARED_DATA / "adi" / "meta.json").read_text())
    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM, default_instruction=meta["instruction"])
    with torch.no_grad():
        dim = model.config.document_dim
        model.head.proj.weight.copy_(torch.eye(dim) + 0.04 * torch.randn(dim, dim))
        model.head.proj.bias.zero_()
    model_dir, index_dir = root / "model", root / "index"
    model.save_pretrained(model_dir)
    cfg = model.config  # the document encoder, sharing the already loaded weights
    encoder = DocumentEncoder(model.query_encoder, model.query_tokenizer, MINILM, cfg.query_encoder_revision,
                              cfg.document_pooling, True, cfg.document_max_length)
    lines = (SHARED_DATA / "adi" / "corpus.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line][:N_DOCS]
    index = DocumentIndex.build(encoder, [r["_id"] for r in rows], [r["text"] for r in rows],
                                titles=[r["title"] for r in rows])
    index.save(index_dir)
    return model_dir, index_dir


def get_space(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The shared app (built once per session, closed at its end): url, demo, service, model/index dirs."""
    config = request.config
    space = getattr(config, _CONFIG_ATTR, None)
    if space:
        return space
    if not (SHARED_DATA / "adi" / "corpus.jsonl").is_file():
        pytest.skip(f"the ADI corpus is missing at {SHARED_DATA / 'adi'}")
    from era_hf.space import load_app

    model_dir, index_dir = _build_model_and_index(request.getfixturevalue("tmp_path_factory").mktemp("space"))
    demo = load_app(str(model_dir), str(index_dir), task=str(SHARED_DATA / "adi"), max_batch_size=8)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            ssr_mode=False, quiet=True, show_error=False)
    space = {"url": url, "demo": demo, "service": demo.era_service, "model_dir": model_dir, "index_dir": index_dir}
    setattr(config, _CONFIG_ATTR, space)
    config.add_cleanup(demo.close)
    return space


@pytest.fixture(scope="session")
def space(request: pytest.FixtureRequest) -> dict[str, Any]:
    return get_space(request)


@pytest.fixture(scope="session")
def client(space: dict[str, Any]):
    from gradio_client import Client

    return Client(space["url"], verbose=False)


def direct_search(service: Any, query: str, instruction: str, k: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """What the app should return, computed with era_hf directly (no Gradio)."""
    era_scores, era_ids = service.index.search(service.model.encode_queries([query], instruction=instruction), k)
    base_scores, base_ids = service.index.search(service.baseline.encode([query]), k)
    return {"era": (era_ids[0], era_scores[0]), "baseline": (base_ids[0], base_scores[0])}


# ----------------------------------------------------------------------------------- API
def test_search_api_matches_direct_search(space, client):
    service = space["service"]
    r = client.predict(KNOWN_QUERY, service.instruction, K, api_name="/search")
    assert r["error"] is None
    assert r["query"] == KNOWN_QUERY and r["k"] == K
    expected = direct_search(service, KNOWN_QUERY, service.instruction, K)
    for side in ("era", "baseline"):
        hits = r[side]["results"]
        assert [h["rank"] for h in hits] == list(range(1, K + 1))
        assert [h["id"] for h in hits] == expected[side][0]
        np.testing.assert_allclose([h["score"] for h in hits], expected[side][1], atol=2e-4)
        assert all(h["title"] and h["snippet"] for h in hits)
        assert r[side]["latency_ms"] > 0
    # the near-identity head keeps ERA close to the baseline on an obvious query
    assert r["era"]["results"][0]["id"] == r["baseline"]["results"][0]["id"] == KNOWN_TOP


def test_search_api_defaults_to_the_prefilled_instruction(space, client):
    r = client.predict("retrieval of chemical information", api_name="/search")
    assert r["error"] is None and r["instruction"] == space["service"].instruction
    assert len(r["era"]["results"]) == 10  # DEFAULT_K


def test_api_is_documented_as_search(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/search"]  # the page's own events are private
    params = [p["parameter_name"] for p in info["named_endpoints"]["/search"]["parameters"]]
    assert params == ["query", "instruction", "k"]


@pytest.mark.parametrize("query", ["", "   \n\t "])
def test_empty_query_is_an_error_message(client, query):
    r = client.predict(query, None, K, api_name="/search")
    assert r["error"] and "enter a query" in r["error"]
    assert r["era"]["results"] == [] and r["baseline"]["results"] == []


def test_over_long_query_is_refused_server_side(client):
    from era_hf.space import MAX_QUERY_CHARS

    r = client.predict("x" * (MAX_QUERY_CHARS + 1), None, K, api_name="/search")
    assert r["error"] and "too long" in r["error"] and f"{MAX_QUERY_CHARS:,}" in r["error"]
    ok = client.predict("word " * (MAX_QUERY_CHARS // 5), None, 2, api_name="/search")  # exactly at the limit
    assert ok["error"] is None and len(ok["era"]["results"]) == 2


@pytest.mark.parametrize("instruction,k,message", [
    (None, 0, "between 1 and"), (None, 10_000, "between 1 and"), (None, 2.5, "whole number"),
    (None, "3", "whole number"), (None, True, "whole number"), ("i" * 1001, 3, "instruction is too long"),
    (["a list"], 3, "instruction must be text"),
])
def test_bad_arguments_are_error_messages(client, instruction, k, message):
    r = client.predict("information retrieval", instruction, k, api_name="/search")
    assert r["error"] and message in r["error"]


def test_malformed_http_requests_do_not_kill_the_app(space, client):
    import httpx

    url = space["url"]
    bad_bodies = [
        {"data": [None, None, None]}, {"data": [123, {"x": 1}, [1, 2]]}, {"data": [["a", "b"], "", 3]},
        {"data": ["q"]}, {"data": []}, {"data": {"query": "q"}}, {"data": "q"}, {"nodata": 1},
        {"data": ["q", "", 3, "extra", "args"]}, {"data": ["q", "", float("1e308")]},
    ]
    with httpx.Client(timeout=30) as http:
        for body in bad_bodies:
            resp = http.post(f"{url}gradio_api/call/search", content=json.dumps(body),
                             headers={"content-type": "application/json"})
            assert resp.status_code < 500, (body, resp.status_code, resp.text[:200])
            if resp.status_code == 200:
                stream = http.get(f"{url}gradio_api/call/search/{resp.json()['event_id']}").text
                assert "Traceback" not in stream and "File \"" not in stream  # no server internals leak
        for raw in (b"{not json", b"\xff\xfe", b"[" * 10_000):
            resp = http.post(f"{url}gradio_api/call/search", content=raw,
                             headers={"content-type": "application/json"})
            assert resp.status_code < 500
    r = client.predict(KNOWN_QUERY, None, 3, api_name="/search")  # still serving
    assert r["error"] is None and len(r["era"]["results"]) == 3


def test_index_model_mismatch_is_a_clear_error(space):
    from era_hf.errors import ERAError
    from era_hf.index import DocumentIndex
    from era_hf.space import build_app

    service = space["service"]
    n = 4
    other = DocumentIndex.from_embeddings(np.eye(n, service.index.dim, dtype=np.float32), [f"d{i}" for i in range(n)],
                                          encoder_info={"document_encoder": "someone/other-encoder"})
    with pytest.raises(ERAError, match="built with document encoder 'someone/other-encoder'"):
        build_app(service.model, other, baseline_encoder=service.baseline)
    small = DocumentIndex.from_embeddings(np.eye(n, 16, dtype=np.float32), [f"d{i}" for i in range(n)],
                                          encoder_info={"document_encoder": MINILM})
    with pytest.raises(ERAError, match="16-d|384-d"):
        build_app(service.model, small, baseline_encoder=service.baseline)


def test_space_app_file_shows_a_mismatch_instead_of_crashing(space, tmp_path, monkeypatch):
    import runpy

    from era_hf.index import DocumentIndex

    other_dir = tmp_path / "other-index"
    DocumentIndex.from_embeddings(np.eye(3, 384, dtype=np.float32), ["a", "b", "c"],
                                  encoder_info={"document_encoder": "someone/other-encoder"}).save(other_dir)
    app_file = Path(__file__).resolve().parents[1] / "spaces" / "era-search" / "app.py"
    monkeypatch.setenv("ERA_MODEL", str(space["model_dir"]))
    monkeypatch.setenv("ERA_INDEX", str(other_dir))
    ns = runpy.run_path(str(app_file), run_name="space_app")  # builds, does not launch
    demo = ns["demo"]
    texts = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    assert any("could not start" in t and "other-encoder" in t for t in texts if isinstance(t, str))
    assert not hasattr(demo, "era_service")


def test_results_html_escapes_document_text():
    from era_hf.space import render_results

    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    result = {"era": {"latency_ms": 1.0, "results": [
        {"rank": 1, "id": '"><b>', "score": 0.5, "title": evil, "snippet": evil}]}}
    out = render_results(result, "era")
    assert "<script>" not in out and "<img" not in out and '"><b>' not in out
    assert "&lt;script&gt;" in out


def test_snippets_are_short():
    from era_hf.space import SNIPPET_CHARS, make_snippet

    prose = make_snippet("word " * 500)
    assert len(prose) <= SNIPPET_CHARS + 2 and prose.endswith("…")
    code = make_snippet("def f(x):\n" + "    x += 1\n" * 40 + "    return x\n")
    assert code.startswith("def f(x):") and code.count("\n") <= 9


# ----------------------------------------------------------------------------------- batching
def test_search_batch_encodes_all_queries_in_one_forward_pass(space, monkeypatch):
    service = space["service"]
    calls: list[int] = []
    original = service.model.encode_queries

    def spy(queries, *args, **kwargs):
        calls.append(len(queries))
        return original(queries, *args, **kwargs)

    monkeypatch.setattr(service.model, "encode_queries", spy)
    out = service.search_batch(["library automation", "", "citation indexing", "x" * 5000], [None] * 4, [3, 3, 4, 3])
    assert calls == [2]  # the two valid queries, together
    assert [r["error"] is None for r in out] == [True, False, True, False]
    assert [r["batch_size"] for r in out if r["error"] is None] == [2, 2]
    assert len(out[2]["era"]["results"]) == 4


def test_concurrent_requests_share_a_forward_pass():
    from era_hf.space import _MicroBatcher

    started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(items):
        if not batches:
            started.set()
            release.wait(10)
        batches.append(list(items))
        return [i * 10 for i in items]

    batcher = _MicroBatcher(run, max_batch_size=3)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.submit(i))) for i in range(6)]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    deadline = time.time() + 10
    while len(batcher._pending) < 5 and time.time() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert results == {i: i * 10 for i in range(6)}
    assert [len(b) for b in batches] == [1, 3, 2]  # 5 waiting requests → batches of max 3


def test_a_failing_batch_is_retried_per_query(space, monkeypatch):
    service = space["service"]
    original = service._run

    def flaky(items):
        if any(q == "boom" for q, _, _ in items):
            raise RuntimeError("internal detail that must not reach users")
        return original(items)

    monkeypatch.setattr(service, "_run", flaky)
    out = service._search_valid([("boom", "", 2), ("library automation", "", 2)])
    assert out[0]["error"] and "internal error" in out[0]["error"] and "internal detail" not in out[0]["error"]
    assert out[1]["error"] is None and len(out[1]["era"]["results"]) == 2


# ----------------------------------------------------------------------------------- CLI
def test_cli_defaults_and_missing_paths(tmp_path):
    import argparse

    from era_hf.errors import ERAError
    from era_hf.space import DEFAULT_INDEX, DEFAULT_MODEL, register_cli

    parser = argparse.ArgumentParser(prog="era-hf")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["space"])
    assert (args.model, args.index, args.host, args.share) == (DEFAULT_MODEL, DEFAULT_INDEX, "127.0.0.1", "no")
    missing = str(tmp_path / "no-such-index")
    args = parser.parse_args(["space", "--model", str(tmp_path), "--index", missing, "--port", "7999"])
    with pytest.raises(ERAError, match="does not exist"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["space", "--share", "maybe"])
    args = parser.parse_args(["space", "--model", str(tmp_path), "--index", missing, "--port", "70000"])
    with pytest.raises(ERAError, match="--port out of range"):
        args.func(args)


# ----------------------------------------------------------------------------------- load
def test_load_200_requests_from_8_threads(space, tmp_path):
    """Bounded load on loopback: no errors; p50 / p95 latency recorded (not asserted)."""
    from gradio_client import Client

    n_requests, n_threads = 200, 8
    queries = [f"{w} of information retrieval systems" for w in
               ("evaluation", "automation", "costs", "indexing", "history", "design", "users", "testing")]
    latencies: list[float] = []
    errors: list[str] = []
    batch_sizes: list[int] = []
    server_ms: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker() -> None:
        c = Client(space["url"], verbose=False)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                r = c.predict(queries[i % len(queries)], None, 5, api_name="/search")
                dt = time.perf_counter() - t0
                ok = r["error"] is None and len(r["era"]["results"]) == 5 and len(r["baseline"]["results"]) == 5
            except Exception as err:  # noqa: BLE001 - counted as an error
                dt, ok, r = time.perf_counter() - t0, False, {"error": repr(err)}
            with lock:
                latencies.append(dt)
                if ok:
                    batch_sizes.append(r["batch_size"])
                    server_ms.append(r["era"]["latency_ms"] + r["baseline"]["latency_ms"])
                else:
                    errors.append(str(r.get("error")))

    t_start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t_start
    assert not errors, errors[:3]
    assert len(latencies) == n_requests
    ms = sorted(x * 1000 for x in latencies)
    report = {
        "requests": n_requests, "threads": n_threads, "errors": len(errors), "wall_s": round(wall, 3),
        "throughput_rps": round(n_requests / wall, 2),
        "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "server_batch_ms_p50": round(statistics.median(server_ms), 2),  # ERA + baseline encode/search of a batch
        "mean_batch_size": round(statistics.mean(batch_sizes), 2),
        "max_batch_size": max(batch_sizes), "documents": len(space["service"].index),
        "model": "MiniLM -> MiniLM (ERA) / MiniLM (baseline)", "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": "clients and server share one process (GIL) on loopback",
    }
    out = Path(os.environ.get("ERA_HF_BENCH_OUT") or tmp_path / "space_load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nspace load: {json.dumps(report)} -> {out}")
