"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

It speaks enough of the Hub's HTTP API for the *real* ``huggingface_hub`` client
(2.4.x, with ``HF_HUB_DISABLE_XET=1``) and for ``transformers``' ``from_pretrained``:

* ``GET /api/whoami-v2``
* ``POST /api/repos/create`` (409 when the repo exists), ``DELETE /api/repos/delete``,
  ``PUT /api/{type}s/{repo}/settings`` (private / gated)
* ``POST /api/validate-yaml`` (README front matter)
* ``GET /api/{type}s`` (list, ``author`` / ``search`` filters)
* ``GET /api/{type}s/{repo}`` and ``/api/{type}s/{repo}/revision/{rev}`` (model_info / dataset_info,
  with ``sha``, ``siblings`` and ``cardData`` from README.md's YAML)
* ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` (``recursive``, ``expand``),
  ``POST /api/{type}s/{repo}/paths-info/{rev}``
* ``POST /api/{type}s/{repo}/preupload/{rev}`` ("lfs" for binary / LFS-pattern / >= 10 MiB files)
* ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder):
  a commit is validated completely, then applied by one atomic ref update, or not at all
* ``GET /api/{type}s/{repo}/refs``, ``GET /api/{type}s/{repo}/commits/{rev}``,
  ``POST|DELETE /api/{type}s/{repo}/branch/{name}``, ``POST|DELETE /api/{type}s/{repo}/tag/{rev|tag}``
* LFS: ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` (basic transfer, upload + verify actions),
  ``PUT /_lfs/upload/{ticket}`` (sha256 and size checked), ``POST .../objects/verify``
* ``HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``, ``X-Linked-Size``, ``Range`` support; no redirects.

Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and
``X-Error-Message`` headers plus a JSON ``{"error": ...}`` body, as the Hub does, so the client raises
its usual exception classes. Authentication: ``Authorization: Bearer <token>``. Writes need a token
from ``tokens``; a token that is present but unknown is rejected with 401 "Invalid credentials in
Authorization header" on every endpoint (like the Hub); public repos are readable without a token;
private repos (and files of gated repos) need a valid token.

``echo_tokens=True`` (settable on a running server) makes every 401 / 403 answer repeat the bearer
token the request carried, in ``X-Error-Message`` and in the JSON body (``... (Authorization: Bearer
<token>)``), as some proxies and servers do: the server message a client gets then holds the token,
so a test can check that an error path really scrubs it.

Storage (under ``root``): ``objects/`` holds file contents by sha256 (shared by all repos);
``repos/{type}s/{namespace}/{name}/repo.json`` holds the refs and settings;
``.../commits/{sha}.json`` each commit's full file table. Commits are immutable, so an old revision
stays downloadable by its sha.

Usage::

    with HubServer(tokens={"hf_test_write"}) as server:
        env = client_env(server, tmp_path / "hf_home", token="hf_test_write")
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

``HF_ENDPOINT`` is read by ``huggingface_hub`` at import time, so run the client in a subprocess with
:func:`client_env` (see :func:`run_client`). In-process use works for the calls that accept an
``endpoint`` argument (``HfApi(endpoint=server.url)``, ``hf_hub_download(..., endpoint=server.url)``),
not for ``ModelCard.validate`` nor ``transformers``.

Standalone: ``python -m tests.hub_server --port 8765 --root /tmp/hub --token hf_test_write``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qs, quote, unquote, urlsplit

try:  # optional: only used by the pytest fixture
    import pytest
except ImportError:  # pragma: no cover - the server also runs without pytest
    pytest = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "HubServer",
    "client_env",
    "hub_server",
    "run_client",
]

DEFAULT_TOKEN = "hf_test_write"
DEFAULT_USER = "test-user"

REPO_TYPES = ("model", "dataset", "space")
_PLURAL = {f"{t}s": t for t in REPO_TYPES}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

LFS_THRESHOLD = 10 * 1024 * 1024  # files of this size or larger are stored with LFS
# The Hub's default .gitattributes patterns plus a few this project writes (faiss indexes, arrays, images).
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar.* *.tar *.tflite "
    "*.tgz *.wasm *.xz *.zip *.zst *tfevents* *.faiss *.index *.png *.jpg *.jpeg *.gif *.webp *.mp3 *.wav "
    "*.flac *.ogg *.mp4 *.gguf *.db"
).split()
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------------------------- helpers
class HubError(Exception):
    """An HTTP error answered to the client (status, message, optional X-Error-Code)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def _valid_path(path: str) -> str:
    if not isinstance(path, str):
        raise HubError(400, "Invalid path: not a string")
    path = path.lstrip("/")
    if path.startswith("./"):
        path = path[2:]
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or ".git" in parts or "\0" in path:
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _is_lfs_path(path: str, size: int, sample: bytes, gitignore_lfs: Iterable[str] = ()) -> bool:
    if size == 0:
        return False
    if size >= LFS_THRESHOLD:
        return True
    name = path.rsplit("/", 1)[-1]
    for pat in list(LFS_PATTERNS) + list(gitignore_lfs):
        if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(path, pat):
            return True
    return b"\0" in sample  # binary content goes to LFS, as on the Hub


def _gitignored(path: str, gitignore: str | None) -> bool:
    if not gitignore:
        return False
    ignored = False
    for line in gitignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        pat = pat.rstrip("/")
        anchored = pat.startswith("/")
        pat = pat.lstrip("/")
        candidates = [path] if anchored or "/" in pat else [path] + path.split("/")
        prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates + prefixes):
            ignored = not negate
    return ignored


def _parse_front_matter(text: str) -> dict | None:
    """YAML metadata at the top of a README.md, or None (raises ValueError if the YAML is invalid)."""
    if not text.startswith("---"):
        return None
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if m is None:
        return None
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return None
    data = yaml.safe_load(m.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("YAML metadata must be a mapping")
    return json.loads(json.dumps(data, default=str))  # dates etc. -> JSON-safe


# --------------------------------------------------------------------------------------------- storage
class _Store:
    """On-disk repos, commits and a content-addressed object store. Thread-safe via one lock."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.repos = self.root / "repos"
        for d in (self.objects, self.tmp, self.repos):
            d.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._counter = 0

    # objects ---------------------------------------------------------------------------------
    def object_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise HubError(400, f"Invalid sha256 oid: {sha256!r}")
        return self.objects / sha256[:2] / sha256

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        p = self.object_path(sha256)
        return p.is_file() and (size is None or p.stat().st_size == size)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        p = self.object_path(sha)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        return sha

    def put_stream(self, chunks: Iterable[bytes], expected_sha: str, expected_size: int) -> None:
        """Store streamed content, only if its sha256 and size are the expected ones."""
        dest = self.object_path(expected_sha)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        h = hashlib.sha256()
        n = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
            if n != expected_size:
                raise HubError(400, f"Size mismatch: expected {expected_size} bytes, received {n}")
            if h.hexdigest() != expected_sha:
                raise HubError(400, f"sha256 mismatch: expected {expected_sha}, received {h.hexdigest()}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # repos -----------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = repo_id.split("/", 1)
        return self.repos / f"{repo_type}s" / ns / name

    def load_repo(self, repo_type: str, repo_id: str) -> dict | None:
        p = self.repo_dir(repo_type, repo_id) / "repo.json"
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def save_repo(self, meta: dict) -> None:
        _atomic_write_json(self.repo_dir(meta["type"], meta["id"]) / "repo.json", meta)

    def load_commit(self, repo_type: str, repo_id: str, sha: str) -> dict | None:
        if not _SHA_RE.match(sha):
            return None
        p = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def new_commit(self, meta: dict, parent: str | None, files: dict, title: str, message: str, author: str) -> str:
        """Write an immutable commit object (not yet referenced by any branch) and return its sha."""
        with self.lock:
            self._counter += 1
            counter = self._counter
        date = _now()
        payload = json.dumps([meta["id"], parent, sorted(files.items()), title, message, date, counter, time.time_ns()])
        sha = hashlib.sha1(payload.encode()).hexdigest()
        for entry in files.values():
            entry.setdefault("last_commit", sha)
            if entry["last_commit"] is None:
                entry["last_commit"] = sha
        commit = {
            "id": sha,
            "parents": [parent] if parent else [],
            "title": title,
            "message": message,
            "date": date,
            "author": author,
            "files": files,
        }
        _atomic_write_json(self.repo_dir(meta["type"], meta["id"]) / "commits" / f"{sha}.json", commit)
        return sha

    def list_repos(self, repo_type: str) -> list[dict]:
        out = []
        base = self.repos / f"{repo_type}s"
        if base.is_dir():
            for p in sorted(base.glob("*/*/repo.json")):
                try:
                    out.append(json.loads(p.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue
        return out


# --------------------------------------------------------------------------------------------- server
class HubServer:
    """A Hub-compatible HTTP server on 127.0.0.1, storing repos under ``root``.

    Args:
        root: storage folder (a fresh temporary folder when None; removed by ``stop()`` then).
        tokens: valid write tokens: an iterable of tokens (user ``DEFAULT_USER``) or a mapping
            token -> user name. Defaults to ``{DEFAULT_TOKEN}``.
        read_tokens: tokens that can read private repos but get 403 on writes (same forms).
        host, port: where to listen; port 0 picks a free port.
        echo_tokens: 401 / 403 answers repeat the bearer token received (header and body), like a
            leaky proxy; also an attribute, so a running server can be switched.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        tokens: Iterable[str] | Mapping[str, str] | None = None,
        read_tokens: Iterable[str] | Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        echo_tokens: bool = False,
    ):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tokens = self._token_map(tokens if tokens is not None else {DEFAULT_TOKEN})
        self.read_tokens = self._token_map(read_tokens or ())
        self.echo_tokens = bool(echo_tokens)
        self.host = host
        self.port = port
        self.store = _Store(self.root)
        self.requests: collections.deque = collections.deque(maxlen=5000)  # (method, path, status)
        self._uploads: dict[str, dict] = {}  # LFS upload tickets
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _token_map(tokens: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
        if isinstance(tokens, str):
            tokens = [tokens]
        if isinstance(tokens, Mapping):
            return {str(k): str(v) for k, v in tokens.items()}
        return {str(t): DEFAULT_USER for t in tokens}

    # lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        """The first valid write token (handy for tests)."""
        return next(iter(self.tokens))

    def start(self) -> "HubServer":
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"hub-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # inspection helpers (server side, no HTTP) ------------------------------------------------
    def head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str | None:
        """The commit sha a branch points to (None if the repo or branch doesn't exist)."""
        meta = self.store.load_repo(repo_type, repo_id)
        return None if meta is None else meta["refs"]["heads"].get(branch)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return self.store.load_repo(repo_type, repo_id) is not None

    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, dict]:
        """``{path: {"size", "sha256", "lfs", "oid"}}`` at a revision."""
        meta = self.store.load_repo(repo_type, repo_id)
        if meta is None:
            raise KeyError(repo_id)
        _, commit = self._resolve(meta, revision)
        return {p: dict(e) for p, e in commit["files"].items()}

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        entry = self.list_files(repo_id, repo_type, revision)[path]
        return self.store.object_path(entry["sha256"]).read_bytes()

    def commits(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[dict]:
        """Commits of a branch, newest first (without the file tables)."""
        meta = self.store.load_repo(repo_type, repo_id)
        out = []
        sha = None if meta is None else meta["refs"]["heads"].get(branch)
        while sha:
            c = self.store.load_commit(repo_type, repo_id, sha)
            out.append({k: v for k, v in c.items() if k != "files"})
            sha = c["parents"][0] if c["parents"] else None
        return out

    def set_private(self, repo_id: str, private: bool = True, repo_type: str = "model") -> None:
        self._update_settings(repo_type, repo_id, {"private": private})

    def set_gated(self, repo_id: str, gated: Any = "auto", repo_type: str = "model") -> None:
        self._update_settings(repo_type, repo_id, {"gated": gated})

    def _update_settings(self, repo_type: str, repo_id: str, changes: dict) -> None:
        with self.store.lock:
            meta = self.store.load_repo(repo_type, repo_id)
            if meta is None:
                raise KeyError(repo_id)
            meta.update(changes)
            self.store.save_repo(meta)

    # core operations (used by the handler) ----------------------------------------------------
    def _resolve(self, meta: dict, revision: str) -> tuple[str, dict]:
        """Resolve a branch / tag / full sha / refs/... name to (sha, commit)."""
        rev = revision
        heads, tags = meta["refs"]["heads"], meta["refs"]["tags"]
        sha = None
        if rev.startswith("refs/heads/"):
            sha = heads.get(rev[len("refs/heads/") :])
        elif rev.startswith("refs/tags/"):
            sha = tags.get(rev[len("refs/tags/") :])
        elif rev in heads:
            sha = heads[rev]
        elif rev in tags:
            sha = tags[rev]
        elif _SHA_RE.match(rev):
            sha = rev
        commit = self.store.load_commit(meta["type"], meta["id"], sha) if sha else None
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, commit

    def create_repo(
        self, repo_id: str, repo_type: str = "model", private: bool = False, author: str = DEFAULT_USER
    ) -> dict | None:
        """Create a repo (server side) with an initial commit holding ``.gitattributes``.

        Returns its metadata, or None if it already exists.
        """
        if repo_type not in REPO_TYPES or repo_id.count("/") != 1:
            raise ValueError(f"bad repo: {repo_type} {repo_id}")
        with self.store.lock:
            if self.store.load_repo(repo_type, repo_id) is not None:
                return None
            meta = {
                "id": repo_id,
                "type": repo_type,
                "private": bool(private),
                "gated": False,
                "created_at": _now(),
                "refs": {"heads": {}, "tags": {}},
            }
            data = GITATTRIBUTES.encode()
            files = {
                ".gitattributes": {
                    "size": len(data),
                    "sha256": self.store.put_bytes(data),
                    "lfs": False,
                    "oid": _git_blob_oid(data),
                    "last_commit": None,
                }
            }
            sha = self.store.new_commit(meta, None, files, "initial commit", "", author)
            meta["refs"]["heads"]["main"] = sha
            self.store.save_repo(meta)
            return meta

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.store.lock:
            d = self.store.repo_dir(repo_type, repo_id)
            if not (d / "repo.json").exists():
                raise HubError(404, "Repository not found", "RepoNotFound")
            trash = self.store.tmp / f"deleted-{secrets.token_hex(8)}"
            os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def commit(self, meta: dict, branch: str, lines: list[dict], author: str) -> str:
        """Validate every operation first, then apply them as one new commit (atomic ref update)."""
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be a header")
        header = lines[0].get("value") or {}
        title = str(header.get("summary") or "").strip()
        if not title:
            raise HubError(400, "Commit summary is required")
        ops = lines[1:]
        with self.store.lock:
            meta = self.store.load_repo(meta["type"], meta["id"])  # re-read under the lock
            if meta is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
            parent = meta["refs"]["heads"].get(branch)
            if parent is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != parent:
                if not (len(parent_commit) >= 7 and parent.startswith(parent_commit)):
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = {p: dict(e) for p, e in self.store.load_commit(meta["type"], meta["id"], parent)["files"].items()}
            pending: list[bytes] = []
            for op in ops:
                key, value = op.get("key"), op.get("value") or {}
                if key == "file":
                    path = _valid_path(value.get("path"))
                    if value.get("encoding", "base64") != "base64":
                        data = str(value.get("content", "")).encode()
                    else:
                        try:
                            data = base64.b64decode(value.get("content", ""), validate=True)
                        except (ValueError, TypeError) as e:
                            raise HubError(400, f"Invalid base64 content for {path}: {e}") from None
                    pending.append(data)
                    files[path] = {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "lfs": False,
                        "oid": _git_blob_oid(data),
                        "last_commit": None,
                    }
                elif key == "lfsFile":
                    path = _valid_path(value.get("path"))
                    oid = str(value.get("oid", ""))
                    if value.get("algo", "sha256") != "sha256":
                        raise HubError(400, "Only sha256 LFS oids are supported")
                    size = value.get("size")
                    if not self.store.has_object(oid, size):
                        raise HubError(
                            400,
                            f"LFS object {oid} for {path} was not uploaded (or its size is not {size})",
                        )
                    size = self.store.object_path(oid).stat().st_size
                    files[path] = {
                        "size": size,
                        "sha256": oid,
                        "lfs": True,
                        "oid": _git_blob_oid(_lfs_pointer(oid, size)),
                        "last_commit": None,
                    }
                elif key == "deletedFile":
                    path = _valid_path(value.get("path"))
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = _valid_path(str(value.get("path", "")).rstrip("/")) + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {prefix}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation key: {key!r}")
            # Everything validated: write contents (content-addressed, harmless if unreferenced) ...
            for data in pending:
                self.store.put_bytes(data)
            # ... carry over last_commit of unchanged files, then write the commit and move the branch.
            old = self.store.load_commit(meta["type"], meta["id"], parent)["files"]
            for p, e in files.items():
                if e.get("last_commit") is None and p in old and old[p]["sha256"] == e["sha256"]:
                    e["last_commit"] = old[p]["last_commit"]
            sha = self.store.new_commit(
                meta, parent, files, title, str(header.get("description") or ""), author
            )
            meta["refs"]["heads"][branch] = sha
            self.store.save_repo(meta)
            return sha

    def new_upload_ticket(self, oid: str, size: int) -> str:
        ticket = secrets.token_urlsafe(24)
        with self.store.lock:
            now = time.time()
            for t in [t for t, v in self._uploads.items() if v["expires"] < now]:
                del self._uploads[t]
            self._uploads[ticket] = {"oid": oid, "size": size, "expires": now + 3600}
        return ticket

    def take_upload_ticket(self, ticket: str) -> dict | None:
        with self.store.lock:
            info = self._uploads.get(ticket)
            if info is None or info["expires"] < time.time():
                return None
            return info


# --------------------------------------------------------------------------------------------- handler
class _Handler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "HubTestServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    # ---- request plumbing ----
    def _body_chunks(self) -> Iterator[bytes]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, _CHUNK))
                    if not chunk:
                        raise HubError(400, "Truncated chunked body")
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline()  # CRLF after the chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, _CHUNK))
                if not chunk:
                    raise HubError(400, "Truncated body")
                remaining -= len(chunk)
                yield chunk

    def _read_body(self) -> bytes:
        if self._body is None:
            self._body_started = True
            self._body = b"".join(self._body_chunks())
        return self._body

    def _drain_unread_body(self) -> None:
        """Before answering an error: consume a small unread body, else close the connection after the answer."""
        if self._body_started:
            if self._body is None:  # partially streamed (e.g. failed LFS PUT): cannot know where it ends
                self.close_connection = True
            return
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        if chunked or length > 64 * 1024 * 1024:
            self.close_connection = True
            return
        try:
            self._read_body()
        except (HubError, OSError, ValueError):
            self.close_connection = True

    def _json_body(self) -> Any:
        raw = self._read_body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None):
        self.send_response(status)
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _send_json(self, data: Any, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers, "application/json; charset=utf-8")

    def _send_error(self, err: HubError) -> None:
        headers = dict(err.headers)
        message = err.message
        if self.hub.echo_tokens and err.status in (401, 403):
            auth = (self.headers.get("Authorization") or "").strip()
            if auth:  # a leaky proxy: the credentials it was sent come back in the error
                message = f"{message} (Authorization: {auth})"
        msg = message.replace("\r", " ").replace("\n", " ")
        headers["X-Error-Message"] = msg.encode("latin-1", "replace").decode("latin-1")
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send_json({"error": message}, err.status, headers)

    def _dispatch(self) -> None:
        self._body = None
        self._body_started = False
        try:
            self._route()
        except HubError as err:
            self._drain_unread_body()  # never leave an unread body on a keep-alive connection
            if self.close_connection:
                err.headers["Connection"] = "close"
            try:
                self._send_error(err)
            except (BrokenPipeError, ConnectionResetError):
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - server bug: answer 500 instead of hanging
            self.close_connection = True
            try:
                self._send_error(HubError(500, f"Internal server error: {type(exc).__name__}: {exc}"))
            except OSError:
                pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    # ---- auth ----
    def _user(self) -> tuple[str | None, str | None]:
        """(user, role) from the bearer token; (None, None) without a token; 401 for an unknown token."""
        auth = self.headers.get("Authorization") or ""
        if not auth.strip():
            return None, None
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HubError(401, INVALID_CREDENTIALS)
        if token in self.hub.tokens:
            return self.hub.tokens[token], "write"
        if token in self.hub.read_tokens:
            return self.hub.read_tokens[token], "read"
        raise HubError(401, INVALID_CREDENTIALS)

    def _require_write(self) -> str:
        user, role = self._user()
        if user is None:
            raise HubError(401, "Authorization required: this endpoint needs a write token")
        if role != "write":
            raise HubError(403, "This token has read-only access; a write token is required")
        return user

    def _repo_for_read(self, repo_type: str, repo_id: str, *, files: bool = False) -> dict:
        user, _ = self._user()
        meta = self.hub.store.load_repo(repo_type, repo_id) if "/" in repo_id else None
        if meta is None or (meta.get("private") and user is None):
            # like the Hub: 401 without a token, 404 with one; both mean "not found" to the client
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if files and meta.get("gated") and user is None:
            raise HubError(
                401, f"Access to {repo_type} {repo_id} is restricted. You must be authenticated.", "GatedRepo"
            )
        return meta

    def _repo_for_write(self, repo_type: str, repo_id: str) -> tuple[dict, str]:
        user = self._require_write()
        meta = self.hub.store.load_repo(repo_type, repo_id) if "/" in repo_id else None
        if meta is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return meta, user

    # ---- routing ----
    def _route(self) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        if segs and segs[-1] == "" and len(segs) > 1:
            segs = segs[:-1]
        m = self.command

        if segs[:1] == ["_lfs"] and len(segs) == 3 and segs[1] == "upload" and m == "PUT":
            return self._lfs_put(segs[2])
        if segs[:1] == ["api"]:
            return self._route_api(segs[1:], m)
        # git-lfs endpoints and resolve: /[datasets/|spaces/]ns/name(.git/info/lfs/objects/...|/resolve/...)
        repo_type = "model"
        rest = segs
        if rest and rest[0] in _PLURAL and rest[0] != "models":
            repo_type, rest = _PLURAL[rest[0]], rest[1:]
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{rest[0]}/{rest[1][:-4]}"
            action = rest[5:]
            if action == ["batch"] and m == "POST":
                return self._lfs_batch(repo_type, repo_id)
            if action == ["verify"] and m == "POST":
                return self._lfs_verify(repo_type, repo_id)
        if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
            return self._resolve_file(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        raise HubError(404, f"Not found: {m} {split.path}")

    def _route_api(self, segs: list[str], m: str) -> None:
        if segs == ["whoami-v2"] and m == "GET":
            return self._whoami()
        if segs == ["repos", "create"] and m == "POST":
            return self._create_repo()
        if segs == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo()
        if segs == ["validate-yaml"] and m == "POST":
            return self._validate_yaml()
        if len(segs) == 1 and segs[0] in _PLURAL and m == "GET":
            return self._list_repos(_PLURAL[segs[0]])
        if len(segs) >= 3 and segs[0] in _PLURAL:
            repo_type, repo_id, rest = _PLURAL[segs[0]], f"{segs[1]}/{segs[2]}", segs[3:]
            if not rest and m == "GET":
                return self._repo_info(repo_type, repo_id, "main")
            action, args = rest[0], rest[1:]
            if action == "revision" and len(args) == 1 and m == "GET":
                return self._repo_info(repo_type, repo_id, args[0])
            if action == "tree" and args and m == "GET":
                return self._tree(repo_type, repo_id, args[0], "/".join(args[1:]))
            if action == "paths-info" and len(args) == 1 and m == "POST":
                return self._paths_info(repo_type, repo_id, args[0])
            if action == "preupload" and len(args) == 1 and m == "POST":
                return self._preupload(repo_type, repo_id, args[0])
            if action == "commit" and len(args) == 1 and m == "POST":
                return self._commit(repo_type, repo_id, args[0])
            if action == "refs" and not args and m == "GET":
                return self._refs(repo_type, repo_id)
            if action == "commits" and len(args) == 1 and m == "GET":
                return self._commits(repo_type, repo_id, args[0])
            if action in ("branch", "tag") and len(args) == 1 and m in ("POST", "DELETE"):
                return self._ref_edit(repo_type, repo_id, action, args[0], m)
            if action == "settings" and not args and m == "PUT":
                return self._settings(repo_type, repo_id)
        raise HubError(404, f"Not found: {m} /api/{'/'.join(segs)}")

    # ---- endpoints ----
    def _whoami(self) -> None:
        user, role = self._user()
        if user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test token", "role": role}},
            }
        )

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        user = self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        name, org = body.get("name"), body.get("organization") or user
        if not isinstance(name, str) or not _NAME_RE.match(name) or not _NAME_RE.match(str(org)):
            raise HubError(400, f"Invalid repo name: {org}/{name}")
        if "visibility" in body:
            private = body["visibility"] in ("private", "protected")
        else:
            private = bool(body.get("private", False))
        repo_id = f"{org}/{name}"
        if self.hub.create_repo(repo_id, repo_type, private, user) is None:
            msg = f"You already created this {repo_type} repo"
            self._send_json({"error": msg, "url": self._repo_url(repo_type, repo_id)}, 409, {"X-Error-Message": msg})
            return
        self._send_json({"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        user = self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        repo_id = f"{body.get('organization') or user}/{body.get('name')}"
        self.hub.delete_repo(repo_type, repo_id)
        self._send_json({})

    def _settings(self, repo_type: str, repo_id: str) -> None:
        meta, _ = self._repo_for_write(repo_type, repo_id)
        body = self._json_body()
        changes = {}
        if "visibility" in body:
            changes["private"] = body["visibility"] in ("private", "protected")
        if "private" in body:
            changes["private"] = bool(body["private"])
        if "gated" in body:
            changes["gated"] = body["gated"]
        self.hub._update_settings(repo_type, repo_id, changes)
        self._send_json({})

    def _validate_yaml(self) -> None:
        self._user()
        body = self._json_body()
        try:
            _parse_front_matter(str(body.get("content", "")))
        except Exception as e:  # yaml.YAMLError, ValueError
            msg = f"Invalid YAML metadata: {e}"
            self._send_json({"error": msg, "errors": [{"message": msg}], "warnings": []}, 400)
            return
        self._send_json({"errors": [], "warnings": []})

    def _list_repos(self, repo_type: str) -> None:
        user, _ = self._user()
        author = (self.query.get("author") or [None])[0]
        search = (self.query.get("search") or [None])[0]
        out = []
        for meta in self.hub.store.list_repos(repo_type):
            if meta.get("private") and user is None:
                continue
            if author and meta["id"].split("/")[0] != author:
                continue
            if search and search.lower() not in meta["id"].lower():
                continue
            out.append(
                {
                    "_id": hashlib.sha1(meta["id"].encode()).hexdigest()[:24],
                    "id": meta["id"],
                    "private": meta.get("private", False),
                    "createdAt": meta["created_at"],
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                }
            )
        limit = (self.query.get("limit") or [None])[0]
        if limit and limit.isdigit():
            out = out[: int(limit)]
        self._send_json(out)

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id)
        sha, commit = self.hub._resolve(meta, revision)
        blobs = _truthy((self.query.get("blobs") or [None])[0])
        siblings = []
        for path in sorted(commit["files"]):
            e = commit["files"][path]
            s: dict[str, Any] = {"rfilename": path}
            if blobs:
                s["size"] = e["size"]
                s["blobId"] = e["oid"]
                if e["lfs"]:
                    s["lfs"] = {
                        "size": e["size"],
                        "sha256": e["sha256"],
                        "pointerSize": len(_lfs_pointer(e["sha256"], e["size"])),
                    }
            siblings.append(s)
        card = None
        tags: list[str] = []
        readme = commit["files"].get("README.md")
        if readme is not None:
            try:
                text = self.hub.store.object_path(readme["sha256"]).read_text(encoding="utf-8")
                card = _parse_front_matter(text)
            except Exception:
                card = None
        if card:
            t = card.get("tags")
            tags = [str(x) for x in t] if isinstance(t, list) else ([str(t)] if t else [])
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": commit["date"],
            "createdAt": meta["created_at"],
            "private": bool(meta.get("private")),
            "gated": meta.get("gated") or False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
            "usedStorage": sum(e["size"] for e in commit["files"].values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo_type == "model":
            if card:
                for key in ("library_name", "pipeline_tag"):
                    if card.get(key):
                        info[key] = card[key]
            cfg_entry = commit["files"].get("config.json")
            if cfg_entry is not None and cfg_entry["size"] < 5_000_000:
                try:
                    cfg = json.loads(self.hub.store.object_path(cfg_entry["sha256"]).read_bytes())
                    info["config"] = {k: cfg[k] for k in ("architectures", "model_type") if k in cfg}
                except (OSError, ValueError):
                    pass
            info["spaces"] = []
        self._send_json(info)

    def _entry_json(self, meta: dict, path: str, e: dict, expand: bool) -> dict:
        out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            out["lfs"] = {
                "oid": e["sha256"],
                "size": e["size"],
                "pointerSize": len(_lfs_pointer(e["sha256"], e["size"])),
            }
        if expand:
            out["lastCommit"] = self._last_commit_json(meta, e.get("last_commit"))
            out["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                         "pickleImportScan": None}
        return out

    def _last_commit_json(self, meta: dict, sha: str | None) -> dict | None:
        c = self.hub.store.load_commit(meta["type"], meta["id"], sha) if sha else None
        return None if c is None else {"id": c["id"], "title": c["title"], "date": c["date"]}

    def _folder_json(self, meta: dict, files: dict, folder: str, expand: bool) -> dict:
        prefix = folder + "/"
        children = sorted((p, e["oid"]) for p, e in files.items() if p.startswith(prefix))
        out: dict[str, Any] = {
            "type": "directory",
            "oid": hashlib.sha1(json.dumps(children).encode()).hexdigest(),
            "size": 0,
            "path": folder,
        }
        if expand:
            commits = [self.hub.store.load_commit(meta["type"], meta["id"], files[p]["last_commit"])
                       for p, _ in children if files[p].get("last_commit")]
            commits = [c for c in commits if c]
            latest = max(commits, key=lambda c: c["date"]) if commits else None
            out["lastCommit"] = latest and {"id": latest["id"], "title": latest["title"], "date": latest["date"]}
        return out

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id)
        sha, commit = self.hub._resolve(meta, revision)
        files = commit["files"]
        recursive = _truthy((self.query.get("recursive") or [None])[0])
        expand = _truthy((self.query.get("expand") or [None])[0])
        path = path.strip("/")
        prefix = path + "/" if path else ""
        under = [p for p in files if p.startswith(prefix)]
        if path and not under:
            hdr = {"X-Repo-Commit": sha}
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers=hdr)
        entries: list[dict] = []
        folders: set[str] = set()
        for p in sorted(under):
            rel = p[len(prefix):]
            parts = rel.split("/")
            if len(parts) == 1:
                entries.append(self._entry_json(meta, p, files[p], expand))
            elif recursive:
                for i in range(1, len(parts)):
                    folders.add(prefix + "/".join(parts[:i]))
                entries.append(self._entry_json(meta, p, files[p], expand))
            else:
                folders.add(prefix + parts[0])
        folder_entries = [self._folder_json(meta, files, f, expand) for f in sorted(folders)]
        self._send_json(folder_entries + entries, headers={"X-Repo-Commit": sha})

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id)
        sha, commit = self.hub._resolve(meta, revision)
        raw = self._read_body()
        ctype = (self.headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            body = json.loads(raw or b"{}")
            paths, expand = body.get("paths", []), bool(body.get("expand"))
            if isinstance(paths, str):
                paths = [paths]
        else:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _truthy((form.get("expand") or [None])[0])
        files = commit["files"]
        out = []
        for p in paths:
            p = str(p).strip("/")
            if p in files:
                out.append(self._entry_json(meta, p, files[p], expand))
            elif p and any(f.startswith(p + "/") for f in files):
                out.append(self._folder_json(meta, files, p, expand))
        self._send_json(out, headers={"X-Repo-Commit": sha})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta, _ = self._repo_for_write(repo_type, repo_id)
        if _truthy((self.query.get("create_pr") or [None])[0]):
            raise HubError(400, "Pull requests are not supported by this test server")
        _, commit = self.hub._resolve(meta, revision)
        body = self._json_body()
        files = commit["files"]
        gitignore = body.get("gitIgnore")
        if gitignore is None and ".gitignore" in files:
            gitignore = self.hub.store.object_path(files[".gitignore"]["sha256"]).read_text("utf-8", "replace")
        out = []
        for f in body.get("files", []):
            path = _valid_path(f.get("path"))
            try:
                sample = base64.b64decode(f.get("sample") or "")
            except ValueError:
                sample = b""
            size = int(f.get("size") or 0)
            mode = "lfs" if _is_lfs_path(path, size, sample) else "regular"
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = existing["sha256"] if existing["lfs"] else existing["oid"]
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": _gitignored(path, gitignore), "oid": oid})
        self._send_json({"files": out, "commitOid": commit["id"]})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta, user = self._repo_for_write(repo_type, repo_id)
        if _truthy((self.query.get("create_pr") or [None])[0]):
            raise HubError(400, "Pull requests are not supported by this test server")
        branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
        if branch not in meta["refs"]["heads"]:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        raw = self._read_body()
        lines = []
        try:
            if raw.lstrip().startswith(b"{") and b"\n" not in raw.strip():
                obj = json.loads(raw)
                if "key" in obj:
                    lines = [obj]
                else:  # legacy JSON payload {"summary", "files", "lfsFiles", "deletedFiles"}
                    lines = [{"key": "header", "value": {k: obj.get(k) for k in ("summary", "description",
                                                                                  "parentCommit")}}]
                    lines += [{"key": "file", "value": v} for v in obj.get("files", [])]
                    lines += [{"key": "lfsFile", "value": v} for v in obj.get("lfsFiles", [])]
                    lines += [{"key": "deletedFile", "value": v} for v in obj.get("deletedFiles", [])]
            else:
                lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "Invalid NDJSON commit payload") from None
        sha = self.hub.commit(meta, branch, lines, user)
        self._send_json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _refs(self, repo_type: str, repo_id: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id)
        heads, tags = meta["refs"]["heads"], meta["refs"]["tags"]
        self._send_json(
            {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in sorted(heads.items())],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in sorted(tags.items())],
                "converts": [],
                "pullRequests": [],
            }
        )

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id)
        sha, _ = self.hub._resolve(meta, revision)
        out = []
        while sha:
            c = self.hub.store.load_commit(repo_type, repo_id, sha)
            if c is None:
                break
            out.append(
                {
                    "id": c["id"],
                    "title": c["title"],
                    "message": c["message"],
                    "date": c["date"],
                    "authors": [{"user": c.get("author") or DEFAULT_USER}],
                }
            )
            sha = c["parents"][0] if c["parents"] else None
        self._send_json(out)

    def _ref_edit(self, repo_type: str, repo_id: str, kind: str, name: str, method: str) -> None:
        meta, _ = self._repo_for_write(repo_type, repo_id)
        body = self._json_body() if method == "POST" else {}
        with self.hub.store.lock:
            meta = self.hub.store.load_repo(repo_type, repo_id)
            if meta is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
            heads, tags = meta["refs"]["heads"], meta["refs"]["tags"]
            if kind == "branch":
                if method == "POST":
                    if name in heads:
                        raise HubError(409, f"Branch {name} already exists")
                    if not _NAME_RE.match(name.replace("/", "-")):
                        raise HubError(400, f"Invalid branch name: {name}")
                    sha, _ = self.hub._resolve(meta, body.get("startingPoint") or "main")
                    heads[name] = sha
                else:
                    if name not in heads:
                        raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                    if name == "main":
                        raise HubError(403, "Cannot delete the main branch")
                    del heads[name]
            else:
                if method == "POST":  # POST /tag/{revision} {"tag": name}
                    tag = str(body.get("tag") or "")
                    if not tag or not _NAME_RE.match(tag.replace("/", "-")):
                        raise HubError(400, f"Invalid tag name: {tag!r}")
                    if tag in tags:
                        raise HubError(409, f"Tag {tag} already exists")
                    sha, _ = self.hub._resolve(meta, name)
                    tags[tag] = sha
                else:
                    if name not in tags:
                        raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                    del tags[name]
            self.hub.store.save_repo(meta)
        self._send_json({})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        meta, _ = self._repo_for_write(repo_type, repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' operation is supported")
        if body.get("hash_algo", "sha256") != "sha256":
            raise HubError(400, "Only sha256 is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub.store.has_object(oid, size):
                ticket = self.hub.new_upload_ticket(oid, size)
                prefix = _URL_PREFIX[repo_type]
                item["actions"] = {
                    "upload": {"href": f"{self.hub.url}/_lfs/upload/{ticket}", "expires_in": 3600},
                    "verify": {"href": f"{self.hub.url}/{prefix}{repo_id}.git/info/lfs/objects/verify",
                               "header": {}},
                }
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, ticket: str) -> None:
        info = self.hub.take_upload_ticket(ticket)
        if info is None:
            raise HubError(403, "Invalid or expired upload URL")
        self._body_started = True
        self.hub.store.put_stream(self._body_chunks(), info["oid"], info["size"])
        self._body = b""
        self._send(200)

    def _lfs_verify(self, repo_type: str, repo_id: str) -> None:
        self._repo_for_write(repo_type, repo_id)
        body = self._json_body()
        oid, size = str(body.get("oid", "")), body.get("size")
        if not self.hub.store.has_object(oid, size if isinstance(size, int) else None):
            raise HubError(404, f"LFS object {oid} not found (or wrong size)")
        self._send(200, b"{}", content_type="application/vnd.git-lfs+json")

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        meta = self._repo_for_read(repo_type, repo_id, files=True)
        sha, commit = self.hub._resolve(meta, revision)
        entry = commit["files"].get(path.strip("/"))
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        obj = self.hub.store.object_path(entry["sha256"])
        size = entry["size"]
        headers = {
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
            "Cache-Control": "private, max-age=0",
        }
        if entry["lfs"]:
            headers["ETag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(size)
        else:
            headers["ETag"] = f'"{entry["oid"]}"'
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m is None or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"Invalid range: {rng}", headers={"Content-Range": f"bytes */{size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                raise HubError(416, f"Range not satisfiable: {rng}", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        headers["Content-Length"] = str(length)
        headers["Content-Type"] = "application/octet-stream"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "GET" and length:
            with open(obj, "rb") as f:
                f.seek(start)
                remaining = length
                while remaining:
                    chunk = f.read(min(remaining, _CHUNK))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        self.hub.requests.append((self.command, self.path, status))


# --------------------------------------------------------------------------------------------- clients
_ENV_DROP = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_STORED_TOKENS_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "HF_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_MODULES_CACHE",
    "SENTENCE_TRANSFORMERS_HOME",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "HF_XET_HIGH_PERFORMANCE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def client_env(
    server: HubServer,
    hf_home: str | os.PathLike,
    token: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a subprocess that runs ``huggingface_hub`` / ``transformers`` against ``server``.

    ``HF_ENDPOINT`` -> the server, ``HF_HUB_DISABLE_XET=1``, a throwaway ``HF_HOME`` (created), no
    offline flags, no inherited tokens / caches / proxies; ``HF_TOKEN`` only when ``token`` is given.
    """
    env = dict(os.environ if base is None else base)
    for key in _ENV_DROP:
        env.pop(key, None)
    hf_home = Path(hf_home)
    hf_home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
            "DO_NOT_TRACK": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_client(
    server: HubServer,
    code: str,
    hf_home: str | os.PathLike,
    *,
    token: str | None = None,
    timeout: float = 120,
    cwd: str | os.PathLike | None = None,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``code`` with ``sys.executable -c`` in the :func:`client_env` environment.

    With ``check=True`` a non-zero exit raises AssertionError showing the subprocess' stdout/stderr.
    """
    env = client_env(server, hf_home, token=token)
    if extra_env:
        env.update(extra_env)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=str(cwd or hf_home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"client subprocess failed (rc={proc.returncode})\n--- stdout ---\n{proc.stdout}\n"
            f"--- stderr ---\n{proc.stderr}"
        )
    return proc


if pytest is not None:

    @pytest.fixture
    def hub_server(tmp_path):
        """A started :class:`HubServer` (token ``DEFAULT_TOKEN``) storing under ``tmp_path / "hub"``."""
        server = HubServer(tmp_path / "hub", tokens={DEFAULT_TOKEN: DEFAULT_USER})
        server.start()
        try:
            yield server
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a small Hub-compatible server for manual testing.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--root", default=None, help="storage folder (default: a temporary folder)")
    parser.add_argument("--token", action="append", default=None,
                        help=f"valid write token (repeatable; default {DEFAULT_TOKEN})")
    parser.add_argument("--read-token", action="append", default=None,
                        help="read-only token (repeatable): reads private repos, 403 on writes")
    parser.add_argument("--echo-tokens", action="store_true",
                        help="repeat the received bearer token in 401/403 answers (a leaky proxy)")
    args = parser.parse_args(argv)
    server = HubServer(args.root, tokens=args.token or {DEFAULT_TOKEN}, read_tokens=args.read_token,
                       host=args.host, port=args.port, echo_tokens=args.echo_tokens)
    server.start()
    print(f"Hub test server at {server.url} (root {server.root}); tokens: {', '.join(server.tokens)}", flush=True)
    print(f"  export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
