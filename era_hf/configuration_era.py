"""ERA configuration. Self-contained: travels with saved models as remote code."""

from __future__ import annotations

import math
import warnings
from typing import Any

try:  # transformers >= 5
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as PreTrainedConfig

from .errors import ERAError

HEAD_TYPES = ("linear", "low_rank_residual", "mlp")
POOLINGS = ("mean", "cls", "last_token")
REFERENCE_TEMPLATE = "Instruct: {instruction}\nQuery: {query}"
#: ``none``: the query as is; ``reference``: the paper's template; anything else: a custom
#: template containing ``{query}`` (and optionally ``{instruction}``).
NAMED_QUERY_FORMATS = {"none": "{query}", "reference": REFERENCE_TEMPLATE}
#: Fields that transformers or era_hf's trainer add to config.json besides the constructor's arguments.
KNOWN_EXTRA_FIELDS = {"auto_map", "architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
                      "training", "mode", "label_ratio", "id2label", "label2id", "return_dict", "output_attentions",
                      "output_hidden_states", "problem_type", "is_encoder_decoder", "chunk_size_feed_forward",
                      "model_type", "_commit_hash", "attn_implementation", "_attn_implementation_autoset",
                      "name_or_path", "trust_remote_code", "revision", "token", "cache_dir", "local_files_only",
                      "subfolder", "code_revision", "_from_auto", "_from_pipeline", "adapter_kwargs"}


def resolve_query_format(query_format: str) -> str:
    """Return the template of a query format name or custom template.

    Example:
        >>> resolve_query_format("reference")
        'Instruct: {instruction}\\nQuery: {query}'
    """
    if not isinstance(query_format, str):
        raise ERAError(f"query_format must be a string (one of {sorted(NAMED_QUERY_FORMATS)} or a template "
                       f"containing '{{query}}'), got {type(query_format).__name__}")
    if query_format in NAMED_QUERY_FORMATS:
        return NAMED_QUERY_FORMATS[query_format]
    if "{query}" not in query_format:
        raise ERAError(
            f"query_format {query_format!r} is neither one of {sorted(NAMED_QUERY_FORMATS)} "
            "nor a template containing '{query}'"
        )
    try:  # only {query} and {instruction} may be filled in
        query_format.format(query="", instruction="")
    except (KeyError, IndexError, ValueError) as err:
        raise ERAError(f"query_format {query_format!r} is not a valid template: only {{query}} and {{instruction}} "
                       f"may appear in braces (write {{{{ and }}}} for literal braces): {type(err).__name__} {err}"
                       ) from None
    return query_format


class ERAConfig(PreTrainedConfig):
    """Configuration of an ERA retrieval adapter.

    Records everything needed to use the adapter: both encoders (Hub id or local path, and the
    revision pinned / actually loaded), their dims, pooling, normalisation and max lengths, the
    query format and default instruction, and the head with its settings. Defaults are the
    paper's reference configuration with the package's default encoder pair.

    Example:
        >>> from era_hf import ERAConfig
        >>> cfg = ERAConfig(head_type="linear", query_format="none")
        >>> cfg.document_dim
        384
    """

    model_type = "era"

    def __init__(
        self,
        query_encoder: str = "sentence-transformers/all-mpnet-base-v2",
        document_encoder: str = "sentence-transformers/all-MiniLM-L6-v2",
        query_encoder_revision: str | None = None,
        document_encoder_revision: str | None = None,
        query_dim: int = 768,
        document_dim: int = 384,
        query_pooling: str = "mean",
        document_pooling: str = "mean",
        normalize_query_embeddings: bool = True,
        normalize_document_embeddings: bool = True,
        query_max_length: int = 128,
        document_max_length: int = 256,
        query_format: str = "reference",
        document_query_format: str = "none",
        default_instruction: str = "",
        head_type: str = "linear",
        head_kwargs: dict[str, Any] | None = None,
        anchor: bool = False,
        lora: dict[str, Any] | None = None,
        init: str = "random",
        recipe: str | None = None,
        lexical_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if head_type not in HEAD_TYPES:
            raise ERAError(f"unknown head_type {head_type!r}; expected one of {', '.join(HEAD_TYPES)}")
        for name, value in (("query_pooling", query_pooling), ("document_pooling", document_pooling)):
            if value not in POOLINGS:
                raise ERAError(f"unknown {name} {value!r}; expected one of {', '.join(POOLINGS)}")
        for name, value in (("query_dim", query_dim), ("document_dim", document_dim),
                            ("query_max_length", query_max_length), ("document_max_length", document_max_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ERAError(f"{name} must be a positive integer, got {value!r}")
        resolve_query_format(query_format)
        resolve_query_format(document_query_format)
        unknown = sorted(set(kwargs) - KNOWN_EXTRA_FIELDS)
        if unknown:  # kept (transformers' convention) but never silently: a typo would fall back to a default
            warnings.warn(f"ERAConfig: unknown field(s) {', '.join(unknown)} are kept but not used by era_hf",
                          stacklevel=2)
        if isinstance(lexical_weight, bool) or not isinstance(lexical_weight, (int, float)) or \
                not math.isfinite(lexical_weight) or lexical_weight < 0:
            raise ERAError(f"lexical_weight (BM25's weight in hybrid search; 0 = dense search only) must be a finite "
                           f"number >= 0, got {lexical_weight!r}")
        if head_kwargs is not None and not isinstance(head_kwargs, dict):
            raise ERAError(f"head_kwargs must be a dict, got {type(head_kwargs).__name__}")
        self.query_encoder = query_encoder
        self.document_encoder = document_encoder
        self.query_encoder_revision = query_encoder_revision
        self.document_encoder_revision = document_encoder_revision
        self.query_dim = query_dim
        self.document_dim = document_dim
        self.query_pooling = query_pooling
        self.document_pooling = document_pooling
        self.normalize_query_embeddings = bool(normalize_query_embeddings)
        self.normalize_document_embeddings = bool(normalize_document_embeddings)
        self.query_max_length = query_max_length
        self.document_max_length = document_max_length
        self.query_format = query_format
        self.document_query_format = document_query_format
        self.default_instruction = default_instruction
        self.head_type = head_type
        self.head_kwargs = dict(head_kwargs or {})
        self.anchor = bool(anchor)
        self.lora = lora
        self.init = init
        self.recipe = recipe
        #: hybrid search (ours): BM25 of the query text, z-scored per query, added with this weight to the z-scored
        #: cosines of the adapted query (era_hf.lexical.fuse_lexical); 0 = dense search only
        self.lexical_weight = float(lexical_weight)
        super().__init__(**kwargs)
