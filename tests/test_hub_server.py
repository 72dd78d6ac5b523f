"""Tests of tests/hub_server.py with the real huggingface_hub / transformers clients (no mocks).

Each client session runs in a subprocess (``run_client``) because ``HF_ENDPOINT`` is read when
huggingface_hub is imported. Raw-HTTP checks of the server's guarantees (auth, atomic commits, LFS
verification) run in-process with urllib.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

try:
    from tests.hub_server import DEFAULT_TOKEN, INVALID_CREDENTIALS, HubServer, hub_server, run_client  # noqa: F401
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less "prepend" import mode)
    from hub_server import DEFAULT_TOKEN, INVALID_CREDENTIALS, HubServer, hub_server, run_client  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def _client(server, tmp_path, code, token=DEFAULT_TOKEN, **kw):
    """Run a client script; print its output (shown by pytest on failure) and return stdout."""
    proc = run_client(server, code, tmp_path / "hf_home", token=token, **kw)
    print(proc.stdout)
    print(proc.stderr[-3000:], file=sys.stderr)
    return proc.stdout


def _http(server, method, path, body=None, token=None, headers=None):
    """(status, headers, body bytes) of one raw request to the server."""
    req = urllib.request.Request(server.url + path, data=body, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _ndjson(*items):
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


# --------------------------------------------------------------------------------------- client tests
def test_upload_download_lfs_and_revisions(hub_server, tmp_path):
    """create_repo, upload_folder (small file + ~11 MB safetensors via LFS), list, download and compare,
    re-push in place (new revision), old revision still downloadable by sha, snapshot_download."""
    out = _client(hub_server, tmp_path, r'''
import hashlib, os, json
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()

api = HfApi()
assert api.whoami()["name"] == "test-user"
url = api.create_repo("test-user/tiny")
assert url.repo_id == "test-user/tiny", url
try:
    api.create_repo("test-user/tiny")
    raise SystemExit("second create_repo should fail with 409")
except HfHubHTTPError as e:
    assert e.response.status_code == 409
api.create_repo("test-user/tiny", exist_ok=True)

os.makedirs("v1/sub")
open("v1/notes.txt", "w").write("version one\n")
open("v1/sub/config.json", "w").write(json.dumps({"dim": 8}))
open("v1/weights.safetensors", "wb").write(os.urandom(11 * 1024 * 1024))
c1 = api.upload_folder(folder_path="v1", repo_id="test-user/tiny", commit_message="v1")
files = sorted(api.list_repo_files("test-user/tiny"))
assert files == [".gitattributes", "notes.txt", "sub/config.json", "weights.safetensors"], files
info = api.model_info("test-user/tiny", files_metadata=True)
assert info.sha == c1.oid
lfs = {s.rfilename: s.lfs for s in info.siblings}
assert lfs["weights.safetensors"] is not None and lfs["weights.safetensors"].sha256 == sha("v1/weights.safetensors")
assert lfs["notes.txt"] is None
tree = {e.path: e for e in api.list_repo_tree("test-user/tiny", recursive=True)}
assert type(tree["sub"]).__name__ == "RepoFolder" and tree["weights.safetensors"].lfs.size == 11 * 1024 * 1024
info_paths = api.get_paths_info("test-user/tiny", ["notes.txt", "sub", "missing.bin"])
assert [p.path for p in info_paths] == ["notes.txt", "sub"]
assert api.file_exists("test-user/tiny", "sub/config.json") and not api.file_exists("test-user/tiny", "nope.txt")

for name in ("weights.safetensors", "notes.txt"):
    assert sha(hf_hub_download("test-user/tiny", name)) == sha("v1/" + name), name

# re-push in place: a new revision on main, the old one still addressable by sha
open("v1/notes.txt", "w").write("version two\n")
open("v1/weights.safetensors", "wb").write(os.urandom(11 * 1024 * 1024 + 7))
c2 = api.upload_folder(folder_path="v1", repo_id="test-user/tiny", commit_message="v2")
assert c2.oid != c1.oid and api.model_info("test-user/tiny").sha == c2.oid
assert sha(hf_hub_download("test-user/tiny", "weights.safetensors")) == sha("v1/weights.safetensors")
assert open(hf_hub_download("test-user/tiny", "notes.txt")).read() == "version two\n"
assert open(hf_hub_download("test-user/tiny", "notes.txt", revision=c1.oid)).read() == "version one\n"
old = snapshot_download("test-user/tiny", revision=c1.oid)
assert open(os.path.join(old, "notes.txt")).read() == "version one\n"
assert os.path.getsize(os.path.join(old, "weights.safetensors")) == 11 * 1024 * 1024
titles = [c.title for c in api.list_repo_commits("test-user/tiny")]
assert titles == ["v2", "v1", "initial commit"], titles
# unchanged upload -> no empty commit
c3 = api.upload_folder(folder_path="v1", repo_id="test-user/tiny", commit_message="same")
assert c3.oid == c2.oid
print("C1", c1.oid)
print("C2", c2.oid)
''')
    c1 = out.split("C1 ")[1].split()[0]
    c2 = out.split("C2 ")[1].split()[0]
    assert hub_server.head("test-user/tiny") == c2
    assert hub_server.list_files("test-user/tiny", revision=c1)["weights.safetensors"]["lfs"] is True
    paths = [p for (_, p, _) in hub_server.requests]
    assert any(p.endswith("/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/_lfs/upload/") for p in paths)


def test_model_card_roundtrip(hub_server, tmp_path):
    _client(hub_server, tmp_path, r'''
from huggingface_hub import HfApi, ModelCard, ModelCardData
api = HfApi()
api.create_repo("test-user/carded")
data = ModelCardData(language="en", license="apache-2.0", library_name="transformers",
                     tags=["retrieval", "era"], base_model="sentence-transformers/all-MiniLM-L6-v2")
card = ModelCard.from_template(data, model_id="carded", model_description="A test card.")
card.push_to_hub("test-user/carded", commit_message="Add card")
loaded = ModelCard.load("test-user/carded")
assert loaded.data.license == "apache-2.0" and loaded.data.tags == ["retrieval", "era"], loaded.data
assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
assert "A test card." in loaded.text
info = api.model_info("test-user/carded")
assert info.card_data.license == "apache-2.0" and info.library_name == "transformers"
assert "retrieval" in info.tags
assert [c.title for c in api.list_repo_commits("test-user/carded")][0] == "Add card"
''')


def test_dataset_repo_private_and_delete(hub_server, tmp_path):
    _client(hub_server, tmp_path, r'''
import os
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
api = HfApi()
anon = HfApi(token=False)
api.create_repo("test-user/corpus", repo_type="dataset")
os.makedirs("ds/qrels")
open("ds/corpus.jsonl", "w").write('{"_id": "d1", "text": "hello"}\n')
open("ds/qrels/test.tsv", "w").write("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
open("ds/emb.npy", "wb").write(b"\x93NUMPY" + bytes(100))
api.upload_folder(folder_path="ds", repo_id="test-user/corpus", repo_type="dataset")
info = api.dataset_info("test-user/corpus")
assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "corpus.jsonl", "emb.npy", "qrels/test.tsv"]
p = hf_hub_download("test-user/corpus", "qrels/test.tsv", repo_type="dataset")
assert open(p).read().endswith("q1\td1\t1\n")
d = snapshot_download("test-user/corpus", repo_type="dataset", local_dir="dl")
assert open(os.path.join(d, "emb.npy"), "rb").read() == open("ds/emb.npy", "rb").read()
# public dataset is readable without a token; the same name as a model does not exist
assert anon.dataset_info("test-user/corpus").sha == info.sha
assert not api.repo_exists("test-user/corpus")

# private repo: invisible without a token
api.create_repo("test-user/secret", private=True)
api.upload_file(path_or_fileobj=b"s3cret", path_in_repo="s.txt", repo_id="test-user/secret")
assert api.model_info("test-user/secret").private is True
for call in (lambda: anon.model_info("test-user/secret"),
             lambda: hf_hub_download("test-user/secret", "s.txt", token=False, cache_dir="c2")):
    try:
        call()
        raise SystemExit("private repo readable without token")
    except RepositoryNotFoundError:
        pass

# delete
api.delete_repo("test-user/corpus", repo_type="dataset")
assert not api.repo_exists("test-user/corpus", repo_type="dataset")
try:
    api.dataset_info("test-user/corpus")
    raise SystemExit("deleted repo still there")
except RepositoryNotFoundError:
    pass
api.delete_repo("test-user/corpus", repo_type="dataset", missing_ok=True)
''')
    assert not hub_server.repo_exists("test-user/corpus", "dataset")
    assert hub_server.repo_exists("test-user/secret")


def test_wrong_token_is_rejected_and_repo_unchanged(hub_server, tmp_path):
    _client(hub_server, tmp_path, r'''
import os
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("test-user/guarded")
api.upload_file(path_or_fileobj=b"original\n", path_in_repo="a.txt", repo_id="test-user/guarded")
''')
    before_head = hub_server.head("test-user/guarded")
    before_files = hub_server.list_files("test-user/guarded")
    n_objects = sum(1 for _ in (hub_server.root / "objects").rglob("*") if _.is_file())

    _client(hub_server, tmp_path, r'''
import os
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
open("w.safetensors", "wb").write(os.urandom(2_000_000))
bad = HfApi(token="hf_wrong_token")
anon = HfApi(token=False)
attempts = {
    "upload_file": lambda api: api.upload_file(path_or_fileobj=b"evil\n", path_in_repo="a.txt",
                                               repo_id="test-user/guarded"),
    "upload_lfs": lambda api: api.upload_file(path_or_fileobj="w.safetensors", path_in_repo="w.safetensors",
                                              repo_id="test-user/guarded"),
    "delete_file": lambda api: api.delete_file("a.txt", repo_id="test-user/guarded"),
    "create_repo": lambda api: api.create_repo("test-user/other"),
    "delete_repo": lambda api: api.delete_repo("test-user/guarded"),
}
for name, attempt in attempts.items():
    for label, api in (("wrong token", bad), ("no token", anon)):
        try:
            attempt(api)
        except HfHubHTTPError as e:
            assert e.response.status_code == 401, (name, label, e.response.status_code)
            if label == "wrong token":
                assert type(e) is HfHubHTTPError, (name, type(e))
                assert "Invalid credentials" in str(e), str(e)
        else:
            raise SystemExit(f"{name} with {label} succeeded")
# the public repo stays readable without a token
assert open(hf_hub_download("test-user/guarded", "a.txt", token=False)).read() == "original\n"
print("ALL REJECTED")
''', token=None)
    assert hub_server.head("test-user/guarded") == before_head
    assert hub_server.list_files("test-user/guarded") == before_files
    assert not hub_server.repo_exists("test-user/other")
    assert sum(1 for _ in (hub_server.root / "objects").rglob("*") if _.is_file()) == n_objects


def test_transformers_from_pretrained(hub_server, tmp_path):
    _client(hub_server, tmp_path, r'''
import torch
from transformers import AutoConfig, AutoModel, BertConfig, BertModel
from huggingface_hub import HfApi
cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32)
torch.manual_seed(0)
model = BertModel(cfg)
model.save_pretrained("local_bert")
api = HfApi()
api.create_repo("test-user/tiny-bert")
api.upload_folder(folder_path="local_bert", repo_id="test-user/tiny-bert")
loaded_cfg = AutoConfig.from_pretrained("test-user/tiny-bert")
assert loaded_cfg.model_type == "bert" and loaded_cfg.hidden_size == 16
loaded = AutoModel.from_pretrained("test-user/tiny-bert")
assert type(loaded).__name__ == "BertModel"
sd, sd2 = model.state_dict(), loaded.state_dict()
assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
assert api.model_info("test-user/tiny-bert").config["model_type"] == "bert"
''', timeout=150)


# --------------------------------------------------------------------------------------- raw HTTP tests
def test_commit_is_atomic_and_lfs_verified(hub_server):
    srv, tok = hub_server, hub_server.token
    srv.create_repo("test-user/atomic")
    head0 = srv.head("test-user/atomic")
    commit_url = "/api/models/test-user/atomic/commit/main"
    good_file = {"key": "file", "value": {"path": "ok.txt", "encoding": "base64",
                                          "content": base64.b64encode(b"ok").decode()}}
    missing_lfs = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3}}
    hdr = {"key": "header", "value": {"summary": "mixed", "description": ""}}

    # a commit with one valid and one invalid operation applies nothing
    status, _, body = _http(srv, "POST", commit_url, _ndjson(hdr, good_file, missing_lfs), tok)
    assert status == 400, body
    assert srv.head("test-user/atomic") == head0
    status, _, _ = _http(srv, "POST", commit_url, _ndjson(hdr, good_file, {"key": "deletedFile",
                                                                           "value": {"path": "nope"}}), tok)
    assert status == 404 and srv.head("test-user/atomic") == head0

    # wrong / missing token: 401 with the Hub's messages, nothing written
    for token in ("hf_nope", None):
        status, headers, body = _http(srv, "POST", commit_url, _ndjson(hdr, good_file), token)
        assert status == 401 and "error" in json.loads(body)
    assert headers.get("X-Error-Message")
    status, headers, _ = _http(srv, "POST", commit_url, _ndjson(hdr, good_file), "hf_nope")
    assert headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert srv.head("test-user/atomic") == head0

    # LFS: batch needs auth; the PUT must match the announced sha256 and size
    data = b"lfs bytes"
    oid = hashlib.sha256(data).hexdigest()
    batch = json.dumps({"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                        "objects": [{"oid": oid, "size": len(data)}]}).encode()
    lfs_hdrs = {"Content-Type": "application/vnd.git-lfs+json"}
    batch_url = "/test-user/atomic.git/info/lfs/objects/batch"
    assert _http(srv, "POST", batch_url, batch, "hf_nope", lfs_hdrs)[0] == 401
    status, _, body = _http(srv, "POST", batch_url, batch, tok, lfs_hdrs)
    assert status == 200
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    path = href[len(srv.url):]
    assert _http(srv, "PUT", "/_lfs/upload/forged-ticket", data)[0] == 403
    assert _http(srv, "PUT", path, b"tampered!")[0] == 400  # same size, other bytes
    assert not srv.store.has_object(oid)
    assert _http(srv, "PUT", path, data)[0] == 200
    assert srv.store.has_object(oid, len(data))
    lfs_op = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}}
    status, _, body = _http(srv, "POST", commit_url, _ndjson(hdr, good_file, lfs_op), tok)
    assert status == 200, body
    new = json.loads(body)["commitOid"]
    assert srv.head("test-user/atomic") == new != head0
    assert srv.read_file("test-user/atomic", "w.bin") == data

    # README metadata validation
    ok = json.dumps({"content": "---\nlicense: mit\n---\n# x\n", "repoType": "model"}).encode()
    bad = json.dumps({"content": "---\nlicense: [unclosed\n---\n# x\n", "repoType": "model"}).encode()
    assert _http(srv, "POST", "/api/validate-yaml", ok, headers={"Content-Type": "application/json"})[0] == 200
    status, _, body = _http(srv, "POST", "/api/validate-yaml", bad, headers={"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["errors"]

    # stale parentCommit is refused
    stale = {"key": "header", "value": {"summary": "stale", "parentCommit": head0}}
    assert _http(srv, "POST", commit_url, _ndjson(stale, good_file), tok)[0] == 412

    # resolve: headers the client relies on, ranges, error codes
    status, headers, body = _http(srv, "GET", f"/test-user/atomic/resolve/{new}/w.bin")
    assert status == 200 and body == data
    assert headers["X-Repo-Commit"] == new and headers["X-Linked-Etag"] == f'"{oid}"'
    assert headers["X-Linked-Size"] == str(len(data))
    status, headers, body = _http(srv, "GET", "/test-user/atomic/resolve/main/w.bin", headers={"Range": "bytes=4-"})
    assert status == 206 and body == data[4:]
    assert _http(srv, "HEAD", "/test-user/atomic/resolve/main/none")[1]["X-Error-Code"] == "EntryNotFound"
    assert _http(srv, "HEAD", "/test-user/atomic/resolve/nobranch/w.bin")[1]["X-Error-Code"] == "RevisionNotFound"
    assert _http(srv, "HEAD", "/test-user/missing/resolve/main/w.bin")[1]["X-Error-Code"] == "RepoNotFound"
    srv.set_gated("test-user/atomic")
    assert _http(srv, "HEAD", "/test-user/atomic/resolve/main/w.bin")[1]["X-Error-Code"] == "GatedRepo"
    assert _http(srv, "HEAD", "/test-user/atomic/resolve/main/w.bin", token=tok)[0] == 200


def test_echo_tokens_repeats_the_credentials_in_auth_errors(tmp_path):
    """``echo_tokens``: 401 and 403 answers carry the bearer token received (header and body); other
    errors, successes, and a server without the option never do."""
    unknown, reader = "hf_unknownSECRET123456", "api_org_readerSECRET42"
    with HubServer(tmp_path / "hub", tokens={DEFAULT_TOKEN: "test-user"}, read_tokens={reader: "test-user"}) as srv:
        srv.create_repo("test-user/echo")
        create = json.dumps({"name": "other", "type": "model"}).encode()
        json_hdr = {"Content-Type": "application/json"}
        cases = [  # (method, path, body, token, status)
            ("GET", "/api/whoami-v2", None, unknown, 401),
            ("POST", "/api/repos/create", create, reader, 403),
            ("POST", "/api/repos/create", create, unknown, 401),
        ]

        def answers():
            return [(_http(srv, m, path, body, tok, json_hdr), tok, want) for m, path, body, tok, want in cases]

        for (status, headers, body), token, want in answers():  # off: the Hub's own messages only
            assert status == want and token not in headers["X-Error-Message"] and token.encode() not in body
        srv.echo_tokens = True  # switched on a running server
        for (status, headers, body), token, want in answers():
            assert status == want, (status, body)
            assert headers["X-Error-Message"].endswith(f"(Authorization: Bearer {token})"), headers
            assert json.loads(body)["error"] == headers["X-Error-Message"]
        assert json.loads(answers()[0][0][2])["error"].startswith(INVALID_CREDENTIALS)
        status, headers, body = _http(srv, "GET", "/api/models/test-user/missing", token=reader)
        assert status == 404 and reader not in headers["X-Error-Message"] and reader.encode() not in body
        status, _, body = _http(srv, "GET", "/api/whoami-v2", token=reader)
        assert status == 200 and reader.encode() not in body
        status, _, body = _http(srv, "POST", "/api/repos/create", create)  # no token: nothing to echo
        assert status == 401 and b"Bearer" not in body
        assert not srv.repo_exists("test-user/other")


def test_standalone_module(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hub_server", "--port", "0", "--root", str(tmp_path / "hub"),
         "--token", "hf_cli", "--read-token", "hf_cli_read", "--echo-tokens"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "Hub test server at http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        req = urllib.request.Request(url + "/api/whoami-v2", headers={"Authorization": "Bearer hf_cli"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["name"] == "test-user"
        req = urllib.request.Request(url + "/api/repos/create", data=b'{"name": "x"}', method="POST",
                                     headers={"Authorization": "Bearer hf_cli_read"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a read-only token created a repo")
        except urllib.error.HTTPError as err:  # --read-token: 403 on writes; --echo-tokens: the token comes back
            assert err.code == 403 and "Bearer hf_cli_read" in json.loads(err.read())["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
