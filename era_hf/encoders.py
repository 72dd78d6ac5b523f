"""Plain text encoders: the lightweight document encoder, and raw query-encoder embeddings for training.

Same pooling / normalisation rules as :class:`~era_hf.ERAModel` (shared code in ``text_encoding``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .text_encoding import check_texts, detect_pooling, encode_texts, load_encoder


class TextEncoder:
    """A frozen Hugging Face encoder with pooling: texts → float32 (n, dim) numpy arrays.

    Example:
        >>> from era_hf.encoders import DocumentEncoder
        >>> enc = DocumentEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> enc.encode_documents(["Lift is produced by pressure differences."]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model: Any, tokenizer: Any, model_id: str, revision: str | None, pooling: str,
                 normalize: bool = True, max_length: int = 256) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.model_id, self.revision = model_id, revision
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length

    @classmethod
    def from_pretrained(cls, model_id: str, revision: str | None = None, pooling: str | None = None,
                        normalize: bool = True, max_length: int = 256, **model_kwargs: Any) -> "TextEncoder":
        """Load by Hub id or local path; pooling is read from a sentence-transformers config when not given."""
        model, tokenizer, resolved = load_encoder(model_id, revision, **model_kwargs)
        model.requires_grad_(False)
        return cls(model, tokenizer, model_id, resolved, pooling or detect_pooling(model_id, revision),
                   normalize, max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the embeddings besides the texts (the cache key's model part)."""
        return {"model_id": self.model_id, "revision": self.revision, "pooling": self.pooling,
                "max_length": self.max_length, "normalize": self.normalize}

    def encode(self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               allow_blank: bool = True) -> np.ndarray:
        """Embed texts; returns float32 (n, dim), an empty (0, dim) array for no texts."""
        texts = check_texts(texts, "texts", allow_blank=allow_blank)
        return encode_texts(self.model, self.tokenizer, texts, pooling=self.pooling, normalize=self.normalize,
                            max_length=self.max_length, batch_size=batch_size,
                            show_progress_bar=show_progress_bar).numpy()


class DocumentEncoder(TextEncoder):
    """The lightweight encoder that embeds (and indexes) the corpus once."""

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32,
                         show_progress_bar: bool | None = None) -> np.ndarray:
        """Embed documents (empty documents are allowed: real corpora have them)."""
        return self.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
