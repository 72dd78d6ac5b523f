"""Content-addressed embedding cache: the same texts through the same encoder are embedded once.

An entry's key is the SHA-256 of a JSON record of

* the encoder's *fingerprint* (model id + resolved revision, pooling, max length,
  normalisation -- :meth:`era_hf.encoders.TextEncoder.fingerprint`), and
* the SHA-256 of the exact list of texts, in order,

so any change of model, revision, settings, text or text order is a different entry.
Each entry is two files in the cache directory:

* ``<key>.npy``  -- the float32 ``(n, dim)`` array (``numpy.save`` format);
* ``<key>.json`` -- metadata: fingerprint, ``n``, ``dim``, ``dtype``, the SHA-256 of the
  array bytes, the era_hf version and the creation time.

Both are written atomically (temp file + fsync + rename), the ``.npy`` first and the
``.json`` last: the metadata file is the commit marker, so a process killed mid-write
leaves at worst an orphan temp file or an ``.npy`` without metadata, both ignored.
On load the array is memory-mapped read-only and checked against its metadata (shape,
dtype and, by default, the checksum); a damaged or inconsistent entry is reported with a
warning, deleted and recomputed -- never used.

The cache lives in ``$ERA_HF_CACHE`` or ``~/.cache/era_hf/embeddings``.

Example:
    >>> from era_hf.cache import EmbeddingCache
    >>> from era_hf.encoders import DocumentEncoder
    >>> cache = EmbeddingCache()  # doctest: +SKIP
    >>> enc = DocumentEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> cache.encode(enc, ["a text", "another"]).shape  # doctest: +SKIP
    (2, 384)
    >>> cache.hits, cache.misses  # doctest: +SKIP
    (0, 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .atomic import atomic_path, atomic_write_json
from .errors import ERAError

#: Bumped when the key recipe or the file layout changes (old entries then simply miss).
CACHE_FORMAT = 1
VERIFY_MODES = ("full", "header")
#: Temp files of interrupted writes older than this are removed by :meth:`EmbeddingCache.clean`.
STALE_TEMP_SECONDS = 3600


class CacheWarning(UserWarning):
    """A cache entry was damaged or inconsistent and is being recomputed (or the cache is not writable)."""


class SupportsEncode(Protocol):
    def fingerprint(self) -> dict[str, Any]: ...

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               show_progress_bar: bool | None = None) -> np.ndarray: ...


def default_cache_dir() -> Path:
    """``$ERA_HF_CACHE`` if set, else ``~/.cache/era_hf/embeddings``."""
    env = os.environ.get("ERA_HF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "era_hf" / "embeddings"


def texts_sha256(texts: Iterable[str]) -> str:
    """SHA-256 of a list of texts in order (length-prefixed UTF-8, so no two lists collide by joining)."""
    h = hashlib.sha256()
    n = 0
    for t in texts:
        if not isinstance(t, str):
            raise ERAError(f"texts[{n}] is {type(t).__name__}, expected str")
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
        n += 1
    h.update(b"n=%d" % n)
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)


def cache_key(fingerprint: Mapping[str, Any], texts: Sequence[str] | None = None, *,
              texts_digest: str | None = None) -> str:
    """The entry key of ``texts`` embedded by an encoder with this ``fingerprint``."""
    if not isinstance(fingerprint, Mapping):
        raise ERAError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    digest = texts_digest if texts_digest is not None else texts_sha256(texts or [])
    record = {"format": CACHE_FORMAT, "fingerprint": dict(fingerprint), "texts_sha256": digest}
    return hashlib.sha256(_canonical(record).encode("utf-8")).hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's raw C-order bytes (read in 64 MiB slices: memmaps are not loaded at once)."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    h = hashlib.sha256()
    step = 64 << 20
    for start in range(0, flat.size, step):
        h.update(memoryview(flat[start:start + step]))
    return h.hexdigest()


class EmbeddingCache:
    """Content-addressed store of embedding matrices (see the module docstring).

    Args:
        root: cache directory; default :func:`default_cache_dir`.
        verify: ``"full"`` (default) checks the SHA-256 of every loaded array (about 1 s per GB);
            ``"header"`` checks only the ``.npy`` header and file size against the metadata.

    Attributes:
        hits / misses: lookups answered from disk / not (a damaged entry counts as a miss).
        corrupt: damaged or inconsistent entries found (and removed) so far.
    """

    def __init__(self, root: str | os.PathLike | None = None, verify: str = "full") -> None:
        if verify not in VERIFY_MODES:
            raise ERAError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.verify = verify
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._unwritable_warned = False

    def __repr__(self) -> str:
        return f"EmbeddingCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    @property
    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}

    # ------------------------------------------------------------------ paths
    def paths(self, key: str) -> tuple[Path, Path]:
        """(``.npy``, ``.json``) paths of an entry."""
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def key(self, fingerprint: Mapping[str, Any], texts: Sequence[str]) -> str:
        return cache_key(fingerprint, texts)

    # ------------------------------------------------------------------ reading
    def lookup(self, fingerprint: Mapping[str, Any], texts: Sequence[str]) -> np.ndarray | None:
        """The cached embeddings of ``texts`` (read-only memmap), or None (counts a hit or a miss).

        Lets callers skip loading a model entirely when the cache is warm.
        """
        texts = _as_text_list(texts)
        array = self._load(cache_key(fingerprint, texts), fingerprint, len(texts))
        if array is None:
            self.misses += 1
        else:
            self.hits += 1
        return array

    def contains(self, fingerprint: Mapping[str, Any], texts: Sequence[str]) -> bool:
        """Whether a committed entry exists (metadata present; not verified, not counted)."""
        return self.paths(cache_key(fingerprint, _as_text_list(texts)))[1].is_file()

    def _load(self, key: str, fingerprint: Mapping[str, Any], n: int) -> np.ndarray | None:
        npy, meta_path = self.paths(key)
        if not meta_path.is_file():
            if npy.is_file():  # an interrupted (or in-progress) write: array there, commit marker not
                # Not deleted: a concurrent writer may be about to commit it; our store() overwrites it.
                self.corrupt += 1
                warnings.warn(f"embedding cache {self.root}: {npy.name} has no metadata file {meta_path.name} "
                              "(interrupted write?); recomputing", CacheWarning, stacklevel=3)
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            self._discard(key, f"unreadable metadata {meta_path.name}: {err}")
            return None
        problem = _check_meta(meta, fingerprint, n)
        if problem:
            self._discard(key, f"{meta_path.name}: {problem}")
            return None
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            self._discard(key, f"{npy.name} is missing")
            return None
        except (OSError, ValueError, EOFError) as err:
            self._discard(key, f"{npy.name} is damaged or truncated: {err}")
            return None
        expected_shape = (meta["n"], meta["dim"])
        if array.shape != expected_shape or str(array.dtype) != meta["dtype"]:
            self._discard(key, f"{npy.name} holds {array.dtype} {array.shape}, metadata says "
                               f"{meta['dtype']} {expected_shape}")
            return None
        if self.verify == "full":
            try:
                digest = array_sha256(array)
            except (OSError, ValueError) as err:  # e.g. SIGBUS-free read errors on a vanished file
                self._discard(key, f"{npy.name} cannot be read: {err}")
                return None
            if digest != meta["sha256"]:
                self._discard(key, f"{npy.name} does not match its checksum (damaged file)")
                return None
        return array

    def _discard(self, key: str, reason: str) -> None:
        self.corrupt += 1
        warnings.warn(f"embedding cache {self.root}: {reason}; recomputing", CacheWarning, stacklevel=4)
        for path in self.paths(key)[::-1]:  # the commit marker first
            with contextlib.suppress(OSError):
                path.unlink()

    # ------------------------------------------------------------------ writing
    def store(self, fingerprint: Mapping[str, Any], texts: Sequence[str], array: np.ndarray) -> np.ndarray:
        """Write an entry; returns it as a read-only memmap (or the array itself if the cache is not writable)."""
        texts = _as_text_list(texts)
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[0] != len(texts):
            raise ERAError(f"embeddings must have shape ({len(texts)}, dim) for {len(texts)} texts, "
                           f"got {array.shape}")
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        array = np.ascontiguousarray(array)
        digest = texts_sha256(texts)
        key = cache_key(fingerprint, texts_digest=digest)
        npy, meta_path = self.paths(key)
        from . import __version__

        meta = {
            "format": CACHE_FORMAT,
            "fingerprint": json.loads(_canonical(dict(fingerprint))),
            "n": int(array.shape[0]),
            "dim": int(array.shape[1]),
            "dtype": str(array.dtype),
            "sha256": array_sha256(array),
            "texts_sha256": digest,
            "era_hf_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            with atomic_path(npy) as tmp:
                with open(tmp, "wb") as tmp_file:  # np.save(path) would append ".npy" to the temp name
                    np.save(tmp_file, array, allow_pickle=False)
            atomic_write_json(meta_path, meta)
        except OSError as err:
            if not self._unwritable_warned:
                warnings.warn(f"embedding cache {self.root} is not writable ({err}); embeddings are not cached",
                              CacheWarning, stacklevel=2)
                self._unwritable_warned = True
            array.setflags(write=False)
            return array
        return np.load(npy, mmap_mode="r", allow_pickle=False)

    def encode(self, encoder: SupportsEncode, texts: Sequence[str], batch_size: int = 32,
               show_progress_bar: bool | None = None) -> np.ndarray:
        """``encoder.encode(texts)`` through the cache; returns a read-only float32 ``(n, dim)`` array."""
        texts = _as_text_list(texts)
        fingerprint = encoder.fingerprint()
        cached = self.lookup(fingerprint, texts)
        if cached is not None:
            return cached
        array = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return self.store(fingerprint, texts, array)

    # ------------------------------------------------------------------ housekeeping
    def clean(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove temp files of interrupted writes and uncommitted ``.npy`` files older than ``older_than`` s."""
        if not self.root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for path in self.root.iterdir():
            stale = path.name.startswith(".") and path.name.endswith(".tmp")
            orphan = path.suffix == ".npy" and not path.with_suffix(".json").exists()
            if (stale or orphan) and now - path.stat().st_mtime > older_than:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed


def _as_text_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ERAError("texts must be a list of strings, not a single string (wrap it in a list)")
    return list(texts)


def _check_meta(meta: Mapping[str, Any], fingerprint: Mapping[str, Any], n: int) -> str:
    """Why a metadata record does not describe the requested entry ("" when it does)."""
    for field, kind in (("n", int), ("dim", int), ("dtype", str), ("sha256", str), ("fingerprint", dict)):
        if not isinstance(meta.get(field), kind):
            return f"field {field!r} missing or malformed"
    if meta.get("format") != CACHE_FORMAT:
        return f"cache format {meta.get('format')!r}, expected {CACHE_FORMAT}"
    if _canonical(meta["fingerprint"]) != _canonical(dict(fingerprint)):
        return "fingerprint does not match the requested encoder"
    if meta["n"] != n:
        return f"holds {meta['n']} rows for {n} texts"
    if meta["dtype"] != "float32":
        return f"dtype {meta['dtype']!r}, expected float32"
    return ""
