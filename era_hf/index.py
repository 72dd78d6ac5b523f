"""FAISS document index: the cheap, frozen side of ERA, built once with the document encoder.

Vectors are L2-normalised and searched by inner product (= cosine): ``IndexFlatIP`` (exact,
the default) or ``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT`` (``kind="hnsw"``, approximate,
for large corpora). An index directory holds

* ``index.faiss``        -- the FAISS index (``faiss.write_index``);
* ``documents.jsonl``    -- one ``{"id", "title", "text"}`` per line, in index order;
* ``index_config.json``  -- document encoder id + resolved revision, pooling, max length,
  normalisation, dim, number of documents, kind, HNSW settings, the era_hf version and the
  SHA-256 of the two files above.

Each file is written atomically and the config last, so a directory with a config is
complete. The same directory can be pushed as a Hub *dataset* repo and loaded by id.

Example:
    >>> from era_hf.index import DocumentIndex
    >>> from era_hf.encoders import DocumentEncoder
    >>> enc = DocumentEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> index = DocumentIndex.build(enc, ["d1", "d2"],
    ...                             ["Lift comes from pressure.", "Heparin thins blood."])  # doctest: +SKIP
    >>> index.save("runs/index")  # doctest: +SKIP
    >>> scores, ids = DocumentIndex.load("runs/index").search(enc.encode(["what makes lift?"]), k=1)  # doctest: +SKIP
    >>> ids  # doctest: +SKIP
    [['d1']]
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .atomic import atomic_open, atomic_path, atomic_write_json, check_writable, sha256_file
from .errors import ERAError
from .text_encoding import looks_like_path

INDEX_FILE = "index.faiss"
DOCUMENTS_FILE = "documents.jsonl"
CONFIG_FILE = "index_config.json"
#: Layout version of index directories; a directory with a higher one needs a newer era_hf.
INDEX_FORMAT = 1
KINDS = ("flat", "hnsw")
DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 128
SEARCH_BATCH = 4096


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a declared dependency
        raise ERAError("the document index needs FAISS: pip install faiss-cpu") from None
    return faiss



def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return -1


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy of ``x`` with unit-length rows (zero rows stay zero)."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def _encoder_info_of(encoder: Any) -> dict[str, Any]:
    """Index metadata of a TextEncoder-like object (``fingerprint()`` + ``dim``)."""
    fp = encoder.fingerprint()
    return {"document_encoder": fp.get("model_id"), "document_encoder_revision": fp.get("revision"),
            "pooling": fp.get("pooling"), "max_length": fp.get("max_length"), "normalize": fp.get("normalize")}


class DocumentIndex:
    """Document embeddings in a FAISS index, with their ids, titles and texts.

    Build with :meth:`build` (from an encoder) or :meth:`from_embeddings`; persist with
    :meth:`save` / :meth:`load`; query with :meth:`search`.

    Attributes:
        doc_ids, titles, texts: per-document lists in index order.
        encoder_info: the document encoder the index was built with (id, revision, pooling, ...).
        kind: ``"flat"`` or ``"hnsw"``.
        dim: embedding dimension.
    """

    def __init__(self, index: Any, doc_ids: Sequence[str], titles: Sequence[str], texts: Sequence[str],
                 encoder_info: Mapping[str, Any] | None, kind: str, hnsw: Mapping[str, int] | None = None) -> None:
        self.index = index
        self.doc_ids, self.titles, self.texts = list(doc_ids), list(titles), list(texts)
        self.encoder_info = dict(encoder_info or {})
        self.kind = kind
        self.hnsw = dict(hnsw or {})
        #: hybrid search's BM25 over the stored texts and the stored vectors, built on first use
        self._lexical: tuple[Any, np.ndarray] | None = None
        #: what :meth:`load` was given (directory or repo id) and the local directory it read
        self.source: str | None = None
        self.source_path: str | None = None

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return (f"DocumentIndex(kind={self.kind!r}, documents={len(self)}, dim={self.dim}, "
                f"document_encoder={self.encoder_info.get('document_encoder')!r})")

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def ef_search(self) -> int | None:
        """HNSW search breadth (higher = more exact, slower); None for flat indexes."""
        return int(self.index.hnsw.efSearch) if self.kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise ERAError("ef_search applies to kind='hnsw' indexes only")
        if not isinstance(value, int) or value < 1:
            raise ERAError(f"ef_search must be a positive integer, got {value!r}")
        self.index.hnsw.efSearch = value
        self.hnsw["ef_search"] = value

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, encoder: Any, doc_ids: Sequence[str], doc_texts: Sequence[str],
              titles: Sequence[str] | None = None, kind: str = "flat", cache: Any = None, *,
              batch_size: int = 32, show_progress_bar: bool | None = None, M: int = DEFAULT_HNSW_M,
              ef_construction: int = DEFAULT_EF_CONSTRUCTION, ef_search: int = DEFAULT_EF_SEARCH) -> "DocumentIndex":
        """Embed documents (``title + " " + text`` when a title) and index them.

        Args:
            encoder: a :class:`~era_hf.encoders.DocumentEncoder` (or any object with ``fingerprint()``,
                ``encode()``), an :class:`~era_hf.task_embeddings.EncoderPair` (its document encoder,
                through its cache), or an ERA model / config (its document encoder).
            cache: an :class:`~era_hf.cache.EmbeddingCache` for a plain encoder (None = not cached).
            kind: ``"flat"`` (exact) or ``"hnsw"`` (``M``, ``ef_construction``, ``ef_search``).
        """
        from .task_embeddings import EncoderPair

        doc_ids, doc_texts, titles = _check_documents(doc_ids, doc_texts, titles)
        _check_kind(kind)
        texts = titled(titles, doc_texts)
        if hasattr(encoder, "config") and hasattr(encoder.config, "document_encoder"):
            encoder = encoder.config
        if hasattr(encoder, "document_encoder") and hasattr(encoder, "query_encoder") and \
                isinstance(getattr(encoder, "document_encoder"), str):  # an ERAConfig
            encoder = EncoderPair.from_config(encoder, cache=cache if cache is not None else False,
                                              batch_size=batch_size)
        if isinstance(encoder, EncoderPair):
            embeddings = encoder.embed_document_side(texts)
            fp = encoder.document_fingerprint()
            info = {"document_encoder": fp["model_id"], "document_encoder_revision": fp["revision"],
                    "pooling": fp["pooling"], "max_length": fp["max_length"], "normalize": fp["normalize"]}
        elif hasattr(encoder, "fingerprint") and hasattr(encoder, "encode"):
            if cache is not None:
                embeddings = cache.encode(encoder, texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
            else:
                embeddings = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
            info = _encoder_info_of(encoder)
        else:
            raise ERAError(f"cannot build an index with {type(encoder).__name__}: pass a DocumentEncoder, "
                           "an EncoderPair or an ERA model")
        return cls.from_embeddings(embeddings, doc_ids, doc_texts, titles, info, kind, M=M,
                                   ef_construction=ef_construction, ef_search=ef_search)

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, doc_ids: Sequence[str], doc_texts: Sequence[str] | None = None,
                        titles: Sequence[str] | None = None, encoder_info: Mapping[str, Any] | None = None,
                        kind: str = "flat", *, M: int = DEFAULT_HNSW_M, ef_construction: int = DEFAULT_EF_CONSTRUCTION,
                        ef_search: int = DEFAULT_EF_SEARCH) -> "DocumentIndex":
        """Index precomputed document embeddings (rows in ``doc_ids`` order; L2-normalised here).

        ``encoder_info``: at least ``{"document_encoder": id}``; also ``document_encoder_revision``,
        ``pooling``, ``max_length``, ``normalize`` when known (recorded in ``index_config.json``).
        """
        faiss = _faiss()
        if doc_texts is None:
            doc_texts = [""] * len(list(doc_ids))
        doc_ids, doc_texts, titles = _check_documents(doc_ids, doc_texts, titles)
        _check_kind(kind)
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or emb.shape[0] != len(doc_ids):
            raise ERAError(f"embeddings must have shape ({len(doc_ids)}, dim) for {len(doc_ids)} documents, "
                           f"got {emb.shape}")
        if emb.shape[1] == 0:
            raise ERAError("embeddings have dimension 0")
        if not np.isfinite(emb).all():
            bad = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
            raise ERAError(f"embedding of document {doc_ids[bad]!r} contains NaN or infinity")
        emb = normalize_rows(emb)
        dim = emb.shape[1]
        hnsw: dict[str, int] = {}
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            for name, value in (("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ERAError(f"{name} must be a positive integer, got {value!r}")
            index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
            hnsw = {"M": M, "ef_construction": ef_construction, "ef_search": ef_search}
        index.add(emb)
        info = dict(encoder_info or {})
        info.setdefault("document_encoder", None)
        return cls(index, doc_ids, titles, doc_texts, info, kind, hnsw)

    # ------------------------------------------------------------------ search
    def search(self, query_embeddings: np.ndarray, k: int = 10, *, query_texts: Sequence[str] | None = None,
               lexical_weight: float = 0.0) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` documents per query by cosine similarity, or in hybrid search with BM25.

        Args:
            query_embeddings: ``(n, dim)`` (or one ``(dim,)`` vector); L2-normalised here.
            k: documents per query, capped at the number of documents.
            query_texts: the queries' texts (hybrid search only).
            lexical_weight: > 0 for hybrid search (an ERA model's ``config.lexical_weight``): every document
                scored exactly by :func:`~era_hf.lexical.fuse_lexical` of its cosine and the BM25 score of the query
                text against its title and text (the BM25 statistics are built from the stored texts on first use,
                and a copy of the vectors is kept in memory: hybrid search costs what a flat index costs).

        Returns:
            ``(scores, ids)``: float32 ``(n, k)`` cosine scores (hybrid: fused z-scores), best first, and the doc
            ids per query. An HNSW index can return fewer than ``k`` hits for a query; its list is then shorter
            and the missing scores are ``-inf``.

        Example:
            >>> index = DocumentIndex.from_embeddings(np.eye(3), ["a", "b", "c"], ["red fox", "blue sky", "green sea"])
            >>> index.search(np.array([1.0, 0.9, 0.0]), k=1)[1]
            [['a']]
            >>> index.search(np.array([1.0, 0.9, 0.0]), k=1, query_texts=["sky"], lexical_weight=1.0)[1]
            [['b']]
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ERAError(f"k must be a positive integer, got {k!r}")
        q = np.asarray(query_embeddings)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ERAError(f"query embeddings must have shape (n, {self.dim}) to search this index "
                           f"(document encoder {self.encoder_info.get('document_encoder')!r}); got {q.shape}. "
                           "Queries must be in the document encoder's space (an ERA model's output)")
        if not np.isfinite(q).all():
            raise ERAError("query embeddings contain NaN or infinity")
        k = min(int(k), self.ntotal)
        n = q.shape[0]
        if lexical_weight != 0.0:
            return self._search_hybrid(q, k, query_texts, lexical_weight)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        rows = np.full((n, k), -1, dtype=np.int64)
        for start in range(0, n, SEARCH_BATCH):
            block = normalize_rows(q[start:start + SEARCH_BATCH])
            s, i = self.index.search(block, k)
            scores[start:start + len(block)] = s
            rows[start:start + len(block)] = i
        ids_arr = np.asarray(self.doc_ids, dtype=object)
        ids = [ids_arr[r[r >= 0]].tolist() for r in rows]
        scores[rows < 0] = -np.inf
        return scores, ids

    def _search_hybrid(self, q: np.ndarray, k: int, query_texts: Sequence[str] | None,
                       lexical_weight: Any) -> tuple[np.ndarray, list[list[str]]]:
        from .evaluation import check_lexical_weight, search_exact
        from .lexical import BM25

        weight = check_lexical_weight(lexical_weight)
        if isinstance(query_texts, str) or not isinstance(query_texts, Sequence) or len(query_texts) != q.shape[0] \
                or not all(isinstance(t, str) for t in query_texts):
            raise ERAError(f"hybrid search (lexical_weight {weight:g}) needs query_texts: a list of {q.shape[0]} "
                           f"string(s), one per query embedding; got {type(query_texts).__name__}")
        if self._lexical is None:
            texts = titled(self.titles, self.texts)
            if not any(texts):
                raise ERAError("hybrid search scores the documents' texts with BM25, but this index holds none "
                               "(built from embeddings without doc_texts)")
            # every vector, so that every document is scored exactly (as a flat index does)
            self._lexical = (BM25(texts), self.index.reconstruct_n(0, self.ntotal))
        bm25, vectors = self._lexical
        ranked, scores = search_exact(q, vectors, self.doc_ids, k=k, return_scores=True,
                                      lexical=bm25.scores(list(query_texts)).numpy(), lexical_weight=weight)
        return scores, ranked

    # ------------------------------------------------------------------ compatibility
    def check_compatible(self, document_encoder_id: str, dim: int, revision: str | None = None) -> None:
        """ERAError when queries from a model for ``document_encoder_id`` / ``dim`` cannot search this index."""
        built_with = self.encoder_info.get("document_encoder")
        problems = []
        if built_with is not None and document_encoder_id != built_with:
            problems.append(f"document encoder {document_encoder_id!r}")
        if int(dim) != self.dim:
            problems.append(f"{dim}-d embeddings")
        if problems:
            raise ERAError(f"this index was built with document encoder {built_with!r} ({self.dim}-d), "
                           f"but the queries come from a model for {' and '.join(problems)}; "
                           f"use a model trained for {built_with!r} or rebuild the index with "
                           f"{document_encoder_id!r}")
        built_rev = self.encoder_info.get("document_encoder_revision")
        if revision and built_rev and revision != built_rev:
            warnings.warn(f"the index was built with {built_with!r} at revision {built_rev}, the model expects "
                          f"revision {revision}; scores may differ slightly", stacklevel=2)

    def check_model(self, model: Any) -> None:
        """:meth:`check_compatible` for an ERA model (or its config)."""
        config = getattr(model, "config", model)
        self.check_compatible(config.document_encoder, config.document_dim,
                              getattr(config, "document_encoder_revision", None))
        for field, ours in (("pooling", "document_pooling"), ("max_length", "document_max_length")):
            built = self.encoder_info.get(field)
            theirs = getattr(config, ours, None)
            if built is not None and theirs is not None and built != theirs:
                warnings.warn(f"the index was built with {field}={built!r}, the model's document side uses "
                              f"{theirs!r}", stacklevel=2)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        from . import __version__

        return {
            "format": INDEX_FORMAT,
            "era_hf_version": __version__,
            **{k: self.encoder_info.get(k) for k in ("document_encoder", "document_encoder_revision", "pooling",
                                                      "max_length", "normalize")},
            "dim": self.dim,
            "normalized": True,
            "metric": "inner_product",
            "num_documents": self.ntotal,
            "kind": self.kind,
            "hnsw": self.hnsw or None,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``documents.jsonl`` and (last) ``index_config.json``; returns the directory."""
        faiss = _faiss()
        directory = check_writable(directory, "index directory", directory=True)
        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_open(directory / DOCUMENTS_FILE, "w") as f:
            for doc_id, title, text in zip(self.doc_ids, self.titles, self.texts):
                f.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
        config = self.config()
        config["sha256"] = {name: sha256_file(directory / name) for name in (INDEX_FILE, DOCUMENTS_FILE)}
        config["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write_json(directory / CONFIG_FILE, config)
        return directory

    @classmethod
    def load(cls, dir_or_repo: str | os.PathLike, revision: str | None = None, *,
             verify: bool = True) -> "DocumentIndex":
        """Load an index directory, or a Hub dataset repo holding one (``revision`` pins it).

        Raises:
            ERAError: a missing or damaged file (named), an index written by a newer era_hf,
                or a repo that cannot be fetched.
        """
        faiss = _faiss()
        path = Path(dir_or_repo)
        source = str(dir_or_repo)
        if not path.exists():
            if looks_like_path(source) or "/" not in source:  # a dataset repo id is always NAMESPACE/NAME
                raise ERAError(f"index directory {source} does not exist")
            path = _download(source, revision)
        if not path.is_dir():
            raise ERAError(f"index directory {source!r} is a file, not a directory")
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            raise ERAError(f"{path} is not a complete index directory: {CONFIG_FILE} is missing")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            raise ERAError(f"{config_path} is damaged: {err}") from None
        from . import __version__

        if _major(config.get("era_hf_version", "0")) > _major(__version__) or \
                not isinstance(config.get("format"), int) or config["format"] > INDEX_FORMAT:
            raise ERAError(f"{config_path}: the index was written by era_hf {config.get('era_hf_version')} "
                           f"(format {config.get('format')}); this is era_hf {__version__} (format {INDEX_FORMAT}); "
                           "upgrade era_hf to load it")
        for field in ("dim", "num_documents", "kind"):
            if field not in config:
                raise ERAError(f"{config_path} is damaged: field {field!r} is missing")
        if config["kind"] not in KINDS:
            raise ERAError(f"{config_path}: unknown index kind {config['kind']!r}")
        checksums = config.get("sha256") or {}
        for name in (INDEX_FILE, DOCUMENTS_FILE):
            file = path / name
            if not file.is_file():
                raise ERAError(f"{path} is not a complete index directory: {name} is missing")
            if verify and name in checksums and sha256_file(file) != checksums[name]:
                raise ERAError(f"{file} is damaged: its SHA-256 does not match {CONFIG_FILE}")
        try:
            index = faiss.read_index(str(path / INDEX_FILE))
        except Exception as err:  # faiss raises RuntimeError with a C++ message
            raise ERAError(f"{path / INDEX_FILE} is damaged: {str(err).strip().splitlines()[0]}") from None
        doc_ids, titles, texts = _read_documents(path / DOCUMENTS_FILE)
        if index.ntotal != config["num_documents"] or len(doc_ids) != config["num_documents"]:
            raise ERAError(f"{path}: {INDEX_FILE} holds {index.ntotal} vectors and {DOCUMENTS_FILE} "
                           f"{len(doc_ids)} documents, {CONFIG_FILE} says {config['num_documents']}")
        if index.d != config["dim"]:
            raise ERAError(f"{path / INDEX_FILE} has dimension {index.d}, {CONFIG_FILE} says {config['dim']}")
        hnsw = config.get("hnsw") or {}
        if config["kind"] == "hnsw" and hnsw.get("ef_search"):
            index.hnsw.efSearch = int(hnsw["ef_search"])
        info = {k: config.get(k) for k in ("document_encoder", "document_encoder_revision", "pooling",
                                            "max_length", "normalize")}
        out = cls(index, doc_ids, titles, texts, info, config["kind"], hnsw)
        out.source, out.source_path = source, str(path)
        return out


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    except Exception as err:  # network, offline mode, not found, bad revision
        raise ERAError(f"cannot fetch index dataset repo {repo_id!r} (revision {revision or 'main'}): "
                       f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}. "
                       "Offline: download it once while online, or pass a local index directory") from None


def _read_documents(path: Path) -> tuple[list[str], list[str], list[str]]:
    ids, titles, texts = [], [], []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    doc_id = row["id"]
                except (ValueError, KeyError, TypeError) as err:
                    raise ERAError(f"{path}:{number} is damaged: {err}") from None
                if doc_id in seen:
                    raise ERAError(f"{path}:{number}: duplicate document id {doc_id!r} (first at line {seen[doc_id]})")
                seen[doc_id] = number
                ids.append(doc_id)
                titles.append(row.get("title") or "")
                texts.append(row.get("text") or "")
    except UnicodeDecodeError as err:
        raise ERAError(f"{path} is damaged: not valid UTF-8 ({err.reason})") from None
    return ids, titles, texts


def titled(titles: Sequence[str], texts: Sequence[str]) -> list[str]:
    """What is embedded and scored per document: ``title + " " + text`` when a title, else ``text``."""
    return [f"{t} {x}" if t else x for t, x in zip(titles, texts)]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ERAError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_documents(doc_ids: Sequence[str], doc_texts: Sequence[str],
                     titles: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
    for name, value in (("doc_ids", doc_ids), ("doc_texts", doc_texts), ("titles", titles)):
        if isinstance(value, str):
            raise ERAError(f"{name} must be a list of strings, not a single string")
    doc_ids, doc_texts = list(doc_ids), list(doc_texts)
    titles = [""] * len(doc_ids) if titles is None else ["" if t is None else t for t in titles]
    if not doc_ids:
        raise ERAError("cannot build an index of an empty corpus (no documents)")
    if len(doc_texts) != len(doc_ids) or len(titles) != len(doc_ids):
        raise ERAError(f"got {len(doc_ids)} doc ids, {len(doc_texts)} texts and {len(titles)} titles; "
                       "give one of each per document")
    seen: dict[str, int] = {}
    for i, doc_id in enumerate(doc_ids):
        if not isinstance(doc_id, str) or not doc_id:
            raise ERAError(f"doc_ids[{i}] must be a non-empty string, got {doc_id!r}")
        if doc_id in seen:
            raise ERAError(f"duplicate document id {doc_id!r} (positions {seen[doc_id]} and {i})")
        seen[doc_id] = i
    for name, values in (("doc_texts", doc_texts), ("titles", titles)):
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise ERAError(f"{name}[{i}] is {type(v).__name__}, expected str")
    return doc_ids, doc_texts, titles
