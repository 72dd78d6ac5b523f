"""The Gradio search Space: API through gradio_client, errors, malformed requests, path-like input (nothing
reaches the filesystem), batching, 200 requests in flight at once.

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
    from era_hf.index import DocumentIndex

    other_dir = tmp_path / "other-index"
    DocumentIndex.from_embeddings(np.eye(3, 384, dtype=np.float32), ["a", "b", "c"],
                                  encoder_info={"document_encoder": "someone/other-encoder"}).save(other_dir)
    demo = _run_app_file(monkeypatch, {"ERA_MODEL": str(space["model_dir"]), "ERA_INDEX": str(other_dir)})
    texts = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    assert any("could not start" in t and "other-encoder" in t for t in texts if isinstance(t, str))
    assert not hasattr(demo, "era_service")


def _run_app_file(monkeypatch, env: dict[str, str]) -> Any:
    import runpy

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app_file = Path(__file__).resolve().parents[1] / "spaces" / "era-search" / "app.py"
    return runpy.run_path(str(app_file), run_name="space_app")["demo"]  # builds, does not launch


def test_space_app_file_reads_rerank_and_batch_variables(space, monkeypatch):
    demo = _run_app_file(monkeypatch, {"ERA_MODEL": str(space["model_dir"]), "ERA_INDEX": str(space["index_dir"]),
                                       "ERA_RERANK_TOP_K": "6", "ERA_RERANK_WEIGHT": "2.5", "ERA_MAX_BATCH_SIZE": "3"})
    service = demo.era_service
    assert service.searcher.rerank.to_dict() == {"top_k": 6, "weight": 2.5}
    assert service.max_k == 6 and service._batcher.max_batch_size == 3


@pytest.mark.parametrize("env, message", [
    ({"ERA_MAX_BATCH_SIZE": "sixteen"}, "ERA_MAX_BATCH_SIZE='sixteen' is not an integer"),
    ({"ERA_RERANK_TOP_K": "50", "ERA_RERANK_WEIGHT": "high"}, "ERA_RERANK_WEIGHT='high' is not a number"),
    ({"ERA_RERANK_WEIGHT": "2"}, "ERA_RERANK_WEIGHT needs ERA_RERANK_TOP_K"),
    ({"ERA_RERANK_TOP_K": "1"}, "ERA_RERANK_TOP_K / ERA_RERANK_WEIGHT: rerank top_k"),
])
def test_space_app_file_shows_a_bad_variable_instead_of_crashing(space, monkeypatch, env, message):
    demo = _run_app_file(monkeypatch, {"ERA_MODEL": str(space["model_dir"]), "ERA_INDEX": str(space["index_dir"]),
                                       **env})
    texts = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    shown = message.replace("_", "\\_")  # the page is Markdown
    assert any("could not start" in t and shown in t for t in texts if isinstance(t, str)), texts
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
    original = service.model.encode_raw_queries

    def spy(queries, *args, **kwargs):
        calls.append(len(queries))
        return original(queries, *args, **kwargs)

    monkeypatch.setattr(service.model, "encode_raw_queries", spy)
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


# ----------------------------------------------------------------------------------- raw HTTP
def _sse_result(stream: str) -> tuple[str | None, Any]:
    """(last event name, its decoded data) of a ``/gradio_api/call/<api>/<event_id>`` event stream."""
    event, data = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line[len("event:"):].strip()
        elif line.startswith("data:"):
            raw = line[len("data:"):].strip()
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
    return event, data


def call_search(http: Any, url: str, data: Any) -> dict[str, Any]:
    """One ``/search`` call over Gradio's plain REST API (POST, then read the event stream).

    Returns ``status`` (of the POST), ``text`` (everything the server sent back), ``event`` and ``result``
    (the endpoint's dict, when the stream completed).
    """
    resp = http.post(f"{url}gradio_api/call/search", json={"data": data})
    out: dict[str, Any] = {"status": resp.status_code, "text": resp.text, "event": None, "result": None}
    if resp.status_code == 200:
        stream = http.get(f"{url}gradio_api/call/search/{resp.json()['event_id']}").text
        out["text"] += stream
        out["event"], payload = _sse_result(stream)
        if out["event"] == "complete" and isinstance(payload, list) and payload and isinstance(payload[0], dict):
            out["result"] = payload[0]
    return out


def direct_search_many(service: Any, queries: list[str], instructions: list[str], k: int) -> list[dict[str, Any]]:
    """:func:`direct_search` for many queries at once (one encode per side; era_hf directly, no Gradio)."""
    era_scores, era_ids = service.index.search(service.model.encode_queries(queries, instruction=instructions), k)
    base_scores, base_ids = service.index.search(service.baseline.encode(queries), k)
    return [{"era": (era_ids[i], era_scores[i]), "baseline": (base_ids[i], base_scores[i])}
            for i in range(len(queries))]


def result_mismatch(r: Any, query: str, instruction: str, k: int, expected: dict[str, Any]) -> str | None:
    """None when ``r`` is the correct answer to (query, instruction, k), else what is wrong."""
    if not isinstance(r, dict):
        return f"not a result: {str(r)[:200]}"
    if r.get("error") is not None:
        return f"error: {r['error']}"
    if (r["query"], r["instruction"], r["k"]) != (query, instruction, k):
        return f"answer to another request: {(r['query'], r['instruction'], r['k'])} != {(query, instruction, k)}"
    for side in ("era", "baseline"):
        hits = r[side]["results"]
        ids, scores = list(expected[side][0][:k]), np.asarray(expected[side][1][:k])
        if [h["rank"] for h in hits] != list(range(1, k + 1)) or [h["id"] for h in hits] != ids:
            return f"{side} ids {[h['id'] for h in hits]} != expected {ids}"
        if not np.allclose([h["score"] for h in hits], scores, atol=2e-4):
            return f"{side} scores {[h['score'] for h in hits]} != expected {scores.round(4).tolist()}"
    return None


# ----------------------------------------------------------------------------------- filesystem
def _tree(root: Path, skip: tuple[str, ...] = ("__pycache__", ".git", ".venv", ".pytest_cache")) -> dict[str, Any]:
    """relative path → (size, mtime_ns) of everything under ``root`` (missing root: {})."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _top(root: Path) -> dict[str, Any]:
    """name → (size, mtime_ns) of the entries directly in ``root``."""
    out: dict[str, Any] = {}
    for p in root.iterdir():
        try:
            st = p.lstat()
        except OSError:
            continue
        out[p.name] = (st.st_size, st.st_mtime_ns)
    return out


def test_path_like_input_never_reaches_the_filesystem(space, tmp_path_factory, monkeypatch):
    """Path-like queries / instructions / k over the real HTTP API are ordinary text: results or a validation
    message, never file content, and no file is created, read back or changed (the process even runs in an
    empty working directory meanwhile, so a relative path would land there)."""
    import hashlib
    import tempfile
    import uuid

    import httpx

    from era_hf.space import MAX_INSTRUCTION_CHARS, MAX_QUERY_CHARS

    service, url = space["service"], space["url"]
    marker = f"era-probe-{uuid.uuid4().hex}"
    secrets = [p for p in (Path("/etc/passwd"), Path("/etc/shadow")) if os.access(p, os.R_OK)]
    secret_state = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in secrets}
    leaks = ["root:"] + [line for p in secrets for line in p.read_text(errors="replace").splitlines()[:3] if line]
    # precondition: nothing the app can legitimately return contains the leak markers
    assert not any(m in text for m in leaks for text in service.index.texts + service.index.titles)

    long_chain = "../" * 300 + "etc/passwd"  # 910 characters: valid as a query and as an instruction
    paths = ["../../etc/passwd", "/etc/shadow", "file:///etc/passwd", "C:\\Windows\\win.ini", long_chain,
             "../../etc/passwd\x00.png", "\x00", "/etc/passwd\x00", f"../../{marker}", f"/tmp/{marker}.txt",
             f"file:///tmp/{marker}", f"./{marker}/../../../etc/passwd", f"~/{marker}", f"\\\\server\\{marker}"]
    assert len(long_chain) <= min(MAX_QUERY_CHARS, MAX_INSTRUCTION_CHARS)
    file_data = {"path": "/etc/passwd", "url": f"{url}gradio_api/file=/etc/passwd", "orig_name": "passwd",
                 "meta": {"_type": "gradio.FileData"}}
    probe_query = "information retrieval"
    valid = [(p, None, 3) for p in paths] + [(probe_query, p, 4) for p in paths]
    invalid = [  # (data, message)
        (["../" * (MAX_QUERY_CHARS // 3 + 1) + "etc/passwd", None, 3], "query is too long"),
        ([probe_query, "../" * (MAX_INSTRUCTION_CHARS // 3 + 1), 3], "instruction is too long"),
        ([probe_query, None, "../../etc/passwd"], "whole number"),
    ]
    # JSON shaped like a Gradio file: Gradio itself refuses a local path that was not uploaded (an error event,
    # before the handler; a 4xx if the request is stopped earlier); were it let through, the handler refuses it
    file_shaped = [([file_data, None, 3], "query must be text"),
                   ([probe_query, file_data, 3], "instruction must be text"),
                   ([{**file_data, "path": "../../etc/passwd"}, None, 3], "query must be text")]

    cwd = tmp_path_factory.mktemp("empty-cwd")
    roots_strict = {"basetemp": tmp_path_factory.getbasetemp()}  # this session only: nothing may change there
    roots_shared = {"repo": Path(__file__).resolve().parents[1], "gradio cache": Path(space["demo"].GRADIO_CACHE)}
    tops_shared = {"tmp": Path(tempfile.gettempdir()), "/": Path("/"), "/etc": Path("/etc"),
                   "home": Path.home()}
    before_strict = {k: _tree(v) for k, v in roots_strict.items()}
    before_shared = {k: _tree(v) for k, v in roots_shared.items()}
    before_tops = {k: _top(v) for k, v in tops_shared.items()}

    monkeypatch.chdir(cwd)
    answers = []
    with httpx.Client(timeout=60) as http:
        for q, ins, k in valid:
            answers.append(((q, ins, k), call_search(http, url, [q, ins, k])))
        for data, message in invalid + file_shaped:
            answers.append(((data, message), call_search(http, url, data)))
    monkeypatch.undo()

    problems = []
    expected = {}
    for (q, ins, k), a in answers[:len(valid)]:
        instruction = (service.instruction if ins is None else ins).strip()
        if (q, instruction) not in expected:
            expected[(q, instruction)] = direct_search_many(service, [q.strip()], [instruction], 10)[0]
        wrong = result_mismatch(a["result"], q.strip(), instruction, k, expected[(q, instruction)])
        if a["status"] != 200 or wrong:
            problems.append((repr(q)[:60], repr(ins)[:60], a["status"], wrong))
    for j, ((data, message), a) in enumerate(answers[len(valid):]):
        r = a["result"]
        refused_by_gradio = j >= len(invalid) and (400 <= a["status"] < 500 or a["event"] == "error")
        if not refused_by_gradio and (a["status"] != 200 or not r or not r["error"] or message not in r["error"]
                                      or r["era"]["results"]):
            problems.append((repr(data)[:80], a["status"], a["event"], a["text"][:300]))
    assert not problems, problems
    for request, a in answers:
        assert not any(m in a["text"] for m in leaks), (repr(request)[:80], a["text"][:300])

    # nothing was created, changed or removed ...
    assert list(cwd.iterdir()) == []
    for name, root in roots_strict.items():
        assert _tree(root) == before_strict[name], name
    for p, state in secret_state.items():
        assert (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) == state, p
    # ... and where other processes write too, no new entry comes from these inputs
    suspicious = (marker, "passwd", "shadow", "win.ini")
    for name, root in roots_shared.items():
        after = _tree(root)
        new = [p for p in after if p not in before_shared[name]]
        assert not [p for p in new if any(s in p for s in suspicious)], (name, new)
        for rel in [p for p in after if after[p] != before_shared[name].get(p)]:
            f = root / rel
            if f.is_file() and not f.is_symlink() and f.stat().st_size < 5_000_000:
                assert marker.encode() not in f.read_bytes(), f
    for name, root in tops_shared.items():
        new = set(_top(root)) - set(before_tops[name])
        assert not [p for p in new if any(s in p for s in suspicious)], (name, sorted(new))
    assert not list(Path(tempfile.gettempdir()).glob(f"*{marker}*"))
    with httpx.Client(timeout=60) as http:  # still serving
        r = call_search(http, url, [KNOWN_QUERY, None, 3])["result"]
    assert r["error"] is None and r["era"]["results"][0]["id"] == KNOWN_TOP


# Gradio 6 moves any file-shaped JSON input ({'path': URL, 'meta': {'_type': 'gradio.FileData'}}) to its cache
# before the handler runs, even for a text-only endpoint (a directory per URL, and for a public host the download):
# era_hf.space.TextOnly refuses such requests first.
def test_file_shaped_json_with_a_url_creates_nothing(space):
    import uuid

    import httpx
    from gradio.processing_utils import hash_url

    url, cache = space["url"], Path(space["demo"].GRADIO_CACHE)
    target = f"http://127.0.0.1:9/era-probe-{uuid.uuid4().hex}.txt"  # loopback: the download itself is refused
    made = cache / hash_url(target)
    assert not made.exists()
    try:
        with httpx.Client(timeout=60) as http:
            a = call_search(http, url, [{"path": target, "meta": {"_type": "gradio.FileData"}}, None, 3])
            assert call_search(http, url, [KNOWN_QUERY, None, 3])["result"]["error"] is None  # still serving
        refused = 400 <= a["status"] < 500 or a["event"] == "error" or "must be text" in (a["result"] or {}).get(
            "error", "")
        assert refused, (a["status"], a["text"][:300])
        assert not made.exists(), f"user input created {made}"
    finally:
        if made.is_dir() and not any(made.iterdir()):
            made.rmdir()


# Gradio 6 serves POST /gradio_api/upload on every app: any client could write files into GRADIO_CACHE, which
# outlive the server. era_hf.space.TextOnly refuses the route.
def test_upload_route_writes_nothing(space):
    import uuid

    import httpx

    url, cache = space["url"], Path(space["demo"].GRADIO_CACHE)
    name = f"era-probe-{uuid.uuid4().hex}.txt"
    written: list[Path] = []
    try:
        with httpx.Client(timeout=60) as http:
            resp = http.post(f"{url}gradio_api/upload", files={"files": (name, b"user bytes\n" * 1000)})
            if resp.status_code == 200:
                written = [Path(p) for p in resp.json() if isinstance(p, str)]
            assert call_search(http, url, [KNOWN_QUERY, None, 3])["result"]["error"] is None  # still serving
        assert not list(cache.glob(f"*/{name}")), f"an upload was written to {cache}"
        assert not 200 <= resp.status_code < 300, (resp.status_code, resp.text[:200])
    finally:
        for p in [*written, *cache.glob(f"*/{name}")]:
            if p.is_file() and p.name == name and cache in p.parents:
                p.unlink()
                if not any(p.parent.iterdir()):
                    p.parent.rmdir()


# ----------------------------------------------------------------------------------- load
LOAD_ASPECTS = ("evaluation", "automation", "costs", "indexing", "history", "design", "users", "testing", "theory",
                "standards")
LOAD_TOPICS = ("information retrieval systems", "library catalogs", "chemical patents", "citation indexes",
               "machine translation", "document classification", "technical reports", "abstracting services",
               "thesaurus construction", "microfilm storage", "computer typesetting", "scientific journals",
               "question answering", "keyword searching", "bibliographic databases",
               "selective dissemination of information", "medical literature", "legal documents",
               "government publications", "data compression")
LOAD_INSTRUCTION = "Find documents about library and information science."


def load_requests(service: Any, n: int = 200) -> tuple[list[list[Any]], list[tuple[str, str, int]], list[dict]]:
    """``n`` distinct requests (query, instruction or None, k from 1 to 10), the (query, instruction, k) each must
    be answered with, and the expected hits of each (era_hf directly)."""
    queries = [f"{a} of {t}" for t in LOAD_TOPICS for a in LOAD_ASPECTS][:n]
    assert len(set(queries)) == n
    sent_instructions = [(None, "", LOAD_INSTRUCTION)[i % 3] for i in range(n)]
    instructions = [(service.instruction if s is None else s).strip() for s in sent_instructions]
    ks = [1 + i % 10 for i in range(n)]
    expected = direct_search_many(service, queries, instructions, 10)
    payloads = [[q, s, k] for q, s, k in zip(queries, sent_instructions, ks)]
    return payloads, list(zip(queries, instructions, ks)), expected


async def burst(url: str, payloads: list[list[Any]], on_all_posted: Any = None) -> list[dict[str, Any]]:
    """Send every payload to ``/search`` at once and read every answer (REST API, a connection per request).

    Each request is a task that waits at a start line; once all are waiting they are released together, so each
    records ``t_sent`` in the same event-loop turn, before any network I/O: all are in flight at once.
    ``on_all_posted()`` runs once every POST (the request joining Gradio's queue) has been answered.
    """
    import asyncio

    import httpx

    n = len(payloads)
    start = asyncio.Event()
    waiting = posted = 0

    async def one(http: httpx.AsyncClient, data: list[Any]) -> dict[str, Any]:
        nonlocal waiting, posted
        waiting += 1
        await start.wait()
        out: dict[str, Any] = {"t_sent": time.perf_counter(), "status": None, "text": "", "event": None,
                               "result": None, "failure": None}
        try:
            resp = await http.post(f"{url}gradio_api/call/search", json={"data": data})
        except httpx.HTTPError as err:  # reported by the caller (e.g. a connection the server dropped)
            out["failure"] = f"POST: {err!r}"
        finally:
            posted += 1
            if posted == n and on_all_posted is not None:
                on_all_posted()
        if out["failure"] is None:
            out.update(status=resp.status_code, text=resp.text)
        if out["status"] == 200:
            try:
                stream = (await http.get(f"{url}gradio_api/call/search/{resp.json()['event_id']}")).text
            except httpx.HTTPError as err:
                out["failure"] = f"GET: {err!r}"
                stream = ""
            out["text"] += stream
            out["event"], payload = _sse_result(stream)
            if out["event"] == "complete" and isinstance(payload, list) and payload:
                out["result"] = payload[0]
        out["t_done"] = time.perf_counter()
        return out

    # a fresh connection for every request: no idle keep-alive connection to race the server closing it
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as http:
        tasks = [asyncio.create_task(one(http, p)) for p in payloads]
        while waiting < n:
            await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


def test_200_concurrent_requests_are_all_answered_correctly(space, tmp_path):
    """200 requests in flight at once (an app with a queue that holds them: ``max_queue_size=256``): every answer
    is the right result for its own request; concurrent queries share forward passes; p50 / p95 latency recorded
    (not asserted); the app keeps serving."""
    import asyncio

    import httpx

    from era_hf.space import build_app

    service = space["service"]
    payloads, wanted, expected = load_requests(service)
    demo = build_app(service.model, service.index, baseline_encoder=service.baseline, instruction=service.instruction,
                     max_batch_size=8, max_queue_size=256)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            ssr_mode=False, quiet=True, show_error=False)
    try:
        t_start = time.perf_counter()
        answers = asyncio.run(burst(url, payloads))
        wall = time.perf_counter() - t_start
        # every request was sent before the first answer came back: all 200 were in flight at once
        assert max(a["t_sent"] for a in answers) < min(a["t_done"] for a in answers)
        failures = [(i, a["failure"]) for i, a in enumerate(answers) if a["failure"]]
        assert not failures, (len(failures), failures[:5])
        wrong = [(i, a["status"], a["event"], result_mismatch(a["result"], *wanted[i], expected[i]))
                 for i, a in enumerate(answers)]
        wrong = [w for w in wrong if w[1] != 200 or w[3]]
        assert not wrong, (len(wrong), wrong[:3])
        batch_sizes = [a["result"]["batch_size"] for a in answers]
        assert max(batch_sizes) > 1 and max(batch_sizes) <= 8  # concurrent queries were encoded together
        with httpx.Client(timeout=60) as http:  # the app still answers afterwards
            r = call_search(http, url, [KNOWN_QUERY, None, 3])["result"]
        assert r["error"] is None and r["era"]["results"][0]["id"] == KNOWN_TOP
    finally:
        demo.close()

    ms = sorted((a["t_done"] - a["t_sent"]) * 1000 for a in answers)
    server_ms = [a["result"]["era"]["latency_ms"] + a["result"]["baseline"]["latency_ms"] for a in answers]
    report = {
        "requests": len(answers), "in_flight_at_once": len(answers), "errors": 0, "wall_s": round(wall, 3),
        "throughput_rps": round(len(answers) / wall, 2),
        "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "server_batch_ms_p50": round(statistics.median(server_ms), 2),  # ERA + baseline encode/search of a batch
        "mean_batch_size": round(statistics.mean(batch_sizes), 2),
        "max_batch_size": max(batch_sizes), "documents": len(service.index),
        "model": "MiniLM -> MiniLM (ERA) / MiniLM (baseline)", "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": "clients and server share one process (GIL) on loopback; 200 connections opened at once",
    }
    out = Path(os.environ.get("ERA_HF_BENCH_OUT") or tmp_path / "space_load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nspace load: {json.dumps(report)} -> {out}")


def test_200_concurrent_requests_overflow_the_default_queue_with_a_clear_refusal(space, client):
    """The shared app, with the default queue (``DEFAULT_MAX_QUEUE`` waiting requests, as the Space), under 200
    requests at once while a forward pass is slow (held): Gradio's queue limit refuses the excess with HTTP 503
    "Queue is full" -- each refused request gets that message, every admitted one its correct result, and the app
    keeps serving."""
    import asyncio

    from era_hf.space import DEFAULT_MAX_QUEUE

    service = space["service"]
    concurrency = service._batcher.max_batch_size  # the shared app admits max_batch_size requests at once
    payloads, wanted, expected = load_requests(service)
    assert len(payloads) > DEFAULT_MAX_QUEUE + concurrency
    held = service._lock  # the forward-pass lock: while held, admitted requests wait inside the search
    held.acquire()
    state = {"released_by": None}
    state_lock = threading.Lock()

    def release(by: str = "all posted") -> None:
        with state_lock:
            if state["released_by"] is None:
                state["released_by"] = by
                held.release()

    safety = threading.Timer(120, release, args=("timeout",))  # never leave the shared app blocked
    safety.start()
    try:
        answers = asyncio.run(burst(space["url"], payloads, on_all_posted=release))
    finally:
        safety.cancel()
        release("test end")
    assert state["released_by"] == "all posted"  # every request had joined or been refused while held
    failures = [(i, a["failure"]) for i, a in enumerate(answers) if a["failure"]]
    assert not failures, (len(failures), failures[:5])
    assert max(a["t_sent"] for a in answers) < min(a["t_done"] for a in answers)  # all in flight at once
    admitted = [i for i, a in enumerate(answers) if a["status"] == 200]
    refused = [i for i, a in enumerate(answers) if a["status"] != 200]
    assert DEFAULT_MAX_QUEUE <= len(admitted) <= DEFAULT_MAX_QUEUE + concurrency, len(admitted)
    for i in refused:
        a = answers[i]
        assert a["status"] == 503, (a["status"], a["text"][:200])
        assert json.loads(a["text"])["detail"].startswith(f"Queue is full. Max size is {DEFAULT_MAX_QUEUE}")
    wrong = [(i, answers[i]["event"], result_mismatch(answers[i]["result"], *wanted[i], expected[i]))
             for i in admitted]
    wrong = [w for w in wrong if w[2]]
    assert not wrong, (len(wrong), wrong[:3])
    assert max(answers[i]["result"]["batch_size"] for i in admitted) > 1
    print(f"\ndefault queue under 200 at once: {len(admitted)} admitted, {len(refused)} refused (HTTP 503)")
    r = client.predict(KNOWN_QUERY, None, 3, api_name="/search")  # still serving
    assert r["error"] is None and r["era"]["results"][0]["id"] == KNOWN_TOP
