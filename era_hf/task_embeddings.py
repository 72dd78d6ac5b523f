"""Embeddings of tasks (corpus and queries) through the embedding cache, shared by evaluation,
training and benchmarks.

:class:`EncoderPair` names the two encoders of an ERA setup and their settings. Models are
loaded only when an embedding is not in the cache: the cache keys (fingerprints) are built
from the model ids, the resolved revisions (read from the local Hugging Face cache) and the
settings, without loading any weights, so a warm cache never loads a model.

Example:
    >>> from era_hf.task_embeddings import EncoderPair
    >>> from era_hf.tasks.beir import load_beir_dir
    >>> pair = EncoderPair("sentence-transformers/all-mpnet-base-v2",
    ...                    "sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> task = load_beir_dir("../shared/data/adi")  # doctest: +SKIP
    >>> pair.corpus(task).shape  # doctest: +SKIP
    (82, 384)
    >>> pair.queries(task, task.judged_query_ids()[:3]).shape  # query encoder, formatted queries  # doctest: +SKIP
    (3, 768)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cache import EmbeddingCache
from .configuration_era import resolve_query_format
from .errors import ERAError

DEFAULT_QUERY_ENCODER = "sentence-transformers/all-mpnet-base-v2"
DEFAULT_DOCUMENT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SIDES = ("query", "document")


def local_model_stamp(path: str | os.PathLike) -> str:
    """A cheap identity of a local model directory's files (names, sizes, mtimes).

    Local paths have no revision; this keeps a model retrained in place from hitting
    embeddings of its previous weights.
    """
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            st = p.stat()
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "local:" + h.hexdigest()[:16]


class _Side:
    """One encoder of the pair: id, settings, lazily loaded model."""

    def __init__(self, role: str, model_id: str, revision: str | None, pooling: str | None,
                 max_length: int, normalize: bool) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise ERAError(f"{role} encoder must be a Hub id or a local path, got {model_id!r}")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
            raise ERAError(f"{role}_max_length must be a positive integer, got {max_length!r}")
        self.role, self.model_id, self.requested_revision = role, model_id, revision
        self._pooling, self.max_length, self.normalize = pooling, max_length, bool(normalize)
        self._revision: str | None = None
        self._revision_known = False
        self.encoder: Any = None  # the loaded TextEncoder, None until needed

    @property
    def revision(self) -> str | None:
        """Resolved commit (no model load: read from the local HF cache); a stamp for local paths."""
        if not self._revision_known:
            if os.path.isdir(self.model_id):
                self._revision = local_model_stamp(self.model_id)
            else:
                from .text_encoding import resolved_revision

                try:
                    self._revision = resolved_revision(self.model_id, self.requested_revision)
                except OSError as err:
                    hint = ""
                    if self.model_id.startswith("sentence-transformers/all-"):
                        hint = " Offline machines: seed the Hugging Face cache with `era-hf models install`."
                    raise ERAError(f"cannot find {self.role} encoder {self.model_id!r} "
                                   f"(revision {self.requested_revision or 'main'}): "
                                   f"{str(err).splitlines()[0].rstrip('.')}.{hint}") from None
            self._revision_known = True
        return self._revision

    @property
    def pooling(self) -> str:
        if self._pooling is None:
            from .text_encoding import detect_pooling

            self._pooling = detect_pooling(self.model_id, self.requested_revision)
        return self._pooling

    def fingerprint(self, max_length: int | None = None) -> dict[str, Any]:
        """Same fields as :meth:`TextEncoder.fingerprint`, so keys are shared with direct cache use."""
        return {"model_id": self.model_id, "revision": self.revision, "pooling": self.pooling,
                "max_length": max_length or self.max_length, "normalize": self.normalize}

    def describe(self) -> dict[str, Any]:
        return {**self.fingerprint(), "requested_revision": self.requested_revision}


def _check_device(device: str | None) -> str | None:
    """A clear error for a device torch cannot parse or this machine does not have (before any model loads)."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ERAError(f"device {device!r} is not a torch device; use e.g. cpu, cuda or cuda:0") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ERAError(f"device {device!r}: CUDA is not available here (this torch build or machine has no GPU); "
                       "use cpu") from None
    return device


class EncoderPair:
    """The two encoders of an ERA setup, loaded lazily: a warm cache never loads a model.

    Args:
        query_encoder / document_encoder: Hub ids or local paths.
        query_encoder_revision / document_encoder_revision: pinned revisions (None = main).
        query_pooling / document_pooling: None = read from the sentence-transformers config.
        query_max_length / document_max_length: token limits.
        query_format: how queries are formatted for the query encoder; ``"auto"`` picks what the
            encoder was trained with (:func:`era_hf.modeling_era.default_query_format`).
        document_query_format: how queries are formatted for the document encoder (cheap baseline,
            anchor); ``"none"`` = the plain query.
        cache: an :class:`EmbeddingCache`; None = the default cache directory; ``False`` = no caching.
        batch_size: encoding batch size.
        query_normalize / document_normalize: L2-normalise the embeddings (ERA's setting: True).
        device: where loaded encoders run; None = CUDA when available, else CPU.
        show_progress_bar: None = for 256+ texts.
    """

    def __init__(self, query_encoder: str = DEFAULT_QUERY_ENCODER, document_encoder: str = DEFAULT_DOCUMENT_ENCODER,
                 *, query_encoder_revision: str | None = None, document_encoder_revision: str | None = None,
                 query_pooling: str | None = None, document_pooling: str | None = None,
                 query_max_length: int = 128, document_max_length: int = 256, query_format: str = "auto",
                 document_query_format: str = "none", cache: EmbeddingCache | None | bool = None,
                 batch_size: int = 32, query_normalize: bool = True, document_normalize: bool = True,
                 device: str | None = None, show_progress_bar: bool | None = None) -> None:
        from .modeling_era import default_query_format

        self._q = _Side("query", query_encoder, query_encoder_revision, query_pooling, query_max_length,
                        query_normalize)
        self._d = _Side("document", document_encoder, document_encoder_revision, document_pooling,
                        document_max_length, document_normalize)
        self.query_format = default_query_format(query_encoder) if query_format == "auto" else query_format
        resolve_query_format(self.query_format)
        resolve_query_format(document_query_format)
        self.document_query_format = document_query_format
        if cache is None or cache is True:
            cache = EmbeddingCache()
        self.cache: EmbeddingCache | None = cache or None
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ERAError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.device = _check_device(device)
        self.show_progress_bar = show_progress_bar
        #: Number of models loaded so far (0 while everything came from the cache).
        self.models_loaded = 0

    @classmethod
    def from_config(cls, config: Any, cache: EmbeddingCache | None | bool = None, **kwargs: Any) -> "EncoderPair":
        """The pair an :class:`~era_hf.ERAConfig` (or a loaded ERAModel's config) was built on."""
        config = getattr(config, "config", config)
        return cls(config.query_encoder, config.document_encoder,
                   query_encoder_revision=config.query_encoder_revision,
                   document_encoder_revision=config.document_encoder_revision,
                   query_pooling=config.query_pooling, document_pooling=config.document_pooling,
                   query_max_length=config.query_max_length, document_max_length=config.document_max_length,
                   query_format=config.query_format, document_query_format=config.document_query_format,
                   query_normalize=config.normalize_query_embeddings,
                   document_normalize=config.normalize_document_embeddings, cache=cache, **kwargs)

    def __repr__(self) -> str:
        return (f"EncoderPair(query_encoder={self._q.model_id!r}, document_encoder={self._d.model_id!r}, "
                f"query_format={self.query_format!r})")

    # ------------------------------------------------------------------ identity
    @property
    def query_encoder_id(self) -> str:
        return self._q.model_id

    @property
    def document_encoder_id(self) -> str:
        return self._d.model_id

    @property
    def query_max_length(self) -> int:
        return self._q.max_length

    @property
    def document_max_length(self) -> int:
        return self._d.max_length

    def query_fingerprint(self, max_length: int | None = None) -> dict[str, Any]:
        return self._q.fingerprint(max_length)

    def document_fingerprint(self) -> dict[str, Any]:
        return self._d.fingerprint()

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of both encoders (ids, resolved revisions, settings) and the query formats."""
        return {"query_encoder": self._q.describe(), "document_encoder": self._d.describe(),
                "query_format": self.query_format, "document_query_format": self.document_query_format}

    # ------------------------------------------------------------------ models (lazy)
    def _load(self, side: _Side, cls_name: str) -> Any:
        if side.encoder is None:
            from . import encoders

            cls = getattr(encoders, cls_name)
            enc = cls.from_pretrained(side.model_id, revision=side.requested_revision, pooling=side.pooling,
                                      normalize=side.normalize, max_length=side.max_length)
            device = self.device
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            enc.model.to(device)
            side.encoder = enc
            self.models_loaded += 1
        return side.encoder

    def query_encoder(self) -> Any:
        """The query-side :class:`~era_hf.encoders.TextEncoder` (loaded on first call)."""
        return self._load(self._q, "TextEncoder")

    def document_encoder(self) -> Any:
        """The :class:`~era_hf.encoders.DocumentEncoder` (loaded on first call)."""
        return self._load(self._d, "DocumentEncoder")

    @property
    def loaded(self) -> dict[str, bool]:
        """Which encoders have been loaded."""
        return {"query": self._q.encoder is not None, "document": self._d.encoder is not None}

    # ------------------------------------------------------------------ embeddings
    def _embed(self, side: _Side, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise ERAError("texts must be a list of strings, not a single string (wrap it in a list)")
        texts = list(texts)
        fingerprint = side.fingerprint(max_length)
        if self.cache is not None:
            cached = self.cache.lookup(fingerprint, texts)
            if cached is not None:
                return cached
        encoder = self.query_encoder() if side is self._q else self.document_encoder()
        if max_length is not None and max_length != encoder.max_length:
            from .encoders import TextEncoder

            encoder = TextEncoder(encoder.model, encoder.tokenizer, encoder.model_id, encoder.revision,
                                  encoder.pooling, encoder.normalize, max_length)
        array = encoder.encode(texts, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar)
        if self.cache is None:
            array.setflags(write=False)
            return array
        return self.cache.store(fingerprint, texts, array)

    def embed_query_side(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Query encoder on raw (already formatted) texts; cached. ``max_length`` overrides the query limit."""
        return self._embed(self._q, texts, max_length)

    def embed_document_side(self, texts: Sequence[str]) -> np.ndarray:
        """Document encoder on raw texts; cached."""
        return self._embed(self._d, texts)

    def corpus(self, task: Any, side: str = "document") -> np.ndarray:
        """Embeddings of ``task.document_texts()`` in corpus order.

        ``side="document"``: the document encoder (the cheap index). ``side="query"``: the query
        encoder with the *document* max length (the query-model upper-reference baseline, which
        re-encodes the corpus).
        """
        _check_side(side)
        texts = task.document_texts()
        if side == "document":
            return self.embed_document_side(texts)
        return self.embed_query_side(texts, max_length=self._d.max_length)

    def format_queries(self, task: Any, qids: Sequence[str], side: str = "query") -> list[str]:
        """The query texts of ``qids`` with their instructions, in the format of ``side``."""
        from .text_encoding import format_queries

        _check_side(side)
        qids = list(qids)
        texts = task.query_texts(qids)
        instructions = _query_instructions(task, qids)
        fmt = self.query_format if side == "query" else self.document_query_format
        return format_queries(texts, instructions, fmt)

    def queries(self, task: Any, qids: Sequence[str], side: str = "query") -> np.ndarray:
        """Embeddings of the queries ``qids`` of ``task`` (rows in ``qids`` order).

        ``side="query"``: query encoder on the queries formatted with ``query_format`` and their
        instructions (the ERA head's input, the query-model baseline). ``side="document"``: document
        encoder on the queries formatted with ``document_query_format`` (the cheap baseline, the anchor).
        """
        formatted = self.format_queries(task, qids, side)
        return self.embed_query_side(formatted) if side == "query" else self.embed_document_side(formatted)


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ERAError(f"side must be one of {', '.join(SIDES)}, got {side!r}")


def _query_instructions(task: Any, qids: list[str]) -> list[str]:
    """Per-query instructions (the task's where a query has none)."""
    if hasattr(task, "query_instructions"):
        return list(task.query_instructions(qids))
    return [getattr(task, "instruction", "") or ""] * len(qids)
