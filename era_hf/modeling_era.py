"""ERAModel: a query encoder plus an adapter head into a document encoder's embedding space.

Self-contained (imports only this folder's remote-code files, torch and transformers), so a
saved model carries it and ``AutoModel.from_pretrained(dir_or_repo, trust_remote_code=True)``
works where ``era_hf`` is not installed. What that remote code runs: it loads the base encoders
by their Hub ids (``AutoModel.from_pretrained``), builds the head and loads the head's
safetensors; it reads no pickle and executes nothing else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from .configuration_era import ERAConfig
from .errors import ERAError
from .heads import build_head
from .text_encoding import (check_texts, detect_pooling, encode_texts, encoder_load_error, format_queries, load_encoder,
                            looks_like_path, resolved_revision)

LORA_SUBFOLDER = "query_encoder_lora"
_UMASK = os.umask(0)
os.umask(_UMASK)
DEFAULT_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}


def default_query_format(model_id: str) -> str:
    """The query format an encoder was trained with: instruction-tuned models use the reference template."""
    instruction_tuned = ("qwen3-embedding", "gte-qwen", "e5-mistral", "instructor", "nv-embed")
    return "reference" if any(k in model_id.lower() for k in instruction_tuned) else "none"


class ERAModel(PreTrainedModel):
    """Strong query encoder + ERA adapter head → embeddings in the document encoder's space.

    The base encoders are frozen and loaded by id; only the head (and an optional LoRA adapter)
    is saved, so a model directory stays a few MB even for a large query encoder.

    Example:
        >>> from era_hf import ERAModel
        >>> model = ERAModel.from_encoders("sentence-transformers/all-mpnet-base-v2",
        ...                                "sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> model.encode_queries(["how do wings produce lift?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    config_class = ERAConfig
    base_model_prefix = "era"
    main_input_name = "input_ids"
    _no_split_modules: list[str] = []

    def __init__(self, config: ERAConfig) -> None:
        super().__init__(config)
        kwargs = dict(config.head_kwargs)
        if config.anchor:  # the correction starts at zero: the untrained model is the cheap baseline
            kwargs.setdefault("zero_init", True)
        self.head = build_head(config.head_type, config.query_dim, config.document_dim, **kwargs)
        # Encoders are attached after the head is built/loaded (transformers 5 builds models on
        # the meta device inside from_pretrained); they are never part of the saved state dict.
        self.query_encoder: torch.nn.Module | None = None
        self.anchor_encoder: torch.nn.Module | None = None
        self.query_tokenizer: Any = None
        self.anchor_tokenizer: Any = None
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Heads initialise themselves (PyTorch defaults, or zeros for anchored corrections).
        return

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_encoders(
        cls,
        query_encoder: str = "sentence-transformers/all-mpnet-base-v2",
        document_encoder: str = "sentence-transformers/all-MiniLM-L6-v2",
        head: str = "linear",
        *,
        query_encoder_revision: str | None = None,
        document_encoder_revision: str | None = None,
        query_pooling: str | None = None,
        document_pooling: str | None = None,
        query_format: str = "auto",
        query_max_length: int = 128,
        document_max_length: int = 256,
        default_instruction: str = "",
        anchor: bool = False,
        lora: dict[str, Any] | bool | None = None,
        **head_kwargs: Any,
    ) -> "ERAModel":
        """Build an untrained adapter for a pair of encoders (dims read from their configs).

        Args:
            query_encoder / document_encoder: Hub ids or local paths.
            head: ``linear`` (the paper), ``low_rank_residual`` or ``mlp``.
            query_format: ``auto`` (what the encoder was trained with), ``none``, ``reference`` or a
                custom template with ``{query}`` and optionally ``{instruction}``.
            anchor: add the document encoder's own query embedding to the head output
                (the untrained model then equals the cheap baseline).
            lora: ``True`` or a dict of ``peft.LoraConfig`` settings to put LoRA on the query encoder.
            **head_kwargs: head settings (``rank``, ``hidden_dim``, ``learn_w0``, ``zero_init``).
        """
        from transformers import AutoConfig

        dims = []
        for model_id, rev in ((query_encoder, query_encoder_revision), (document_encoder, document_encoder_revision)):
            try:
                dims.append(AutoConfig.from_pretrained(model_id, revision=rev).hidden_size)
            except (OSError, ValueError) as err:
                raise encoder_load_error(model_id, rev, err) from None
        config = ERAConfig(
            query_encoder=query_encoder,
            document_encoder=document_encoder,
            query_encoder_revision=query_encoder_revision,
            document_encoder_revision=document_encoder_revision,
            query_dim=dims[0],
            document_dim=dims[1],
            query_pooling=query_pooling or detect_pooling(query_encoder, query_encoder_revision),
            document_pooling=document_pooling or detect_pooling(document_encoder, document_encoder_revision),
            query_format=default_query_format(query_encoder) if query_format == "auto" else query_format,
            query_max_length=query_max_length,
            document_max_length=document_max_length,
            default_instruction=default_instruction,
            head_type=head,
            head_kwargs=head_kwargs,
            anchor=anchor,
            lora=({**DEFAULT_LORA} if lora is True else lora) or None,
        )
        model = cls(config)
        model.attach_encoders()
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> "ERAModel":
        """Load the head and config, then attach the base encoders by id (and the LoRA adapter, if any)."""
        name = str(pretrained_model_name_or_path)
        path = Path(name)
        if path.is_dir():
            _check_model_dir(path)
        elif path.is_file():
            raise ERAError(f"{name!r} is a file, not an ERA model directory")
        elif looks_like_path(name):
            raise ERAError(f"ERA model directory {name!r} does not exist")
        encoder_kwargs = kwargs.pop("encoder_kwargs", {})
        with_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True,
                                                  **kwargs)
        except OSError as err:
            hint = "" if path.exists() or name.count("/") != 1 else f" (and there is no local directory {name!r})"
            raise ERAError(f"cannot load ERA model {name!r}: {str(err).splitlines()[0]}{hint}") from None
        except RuntimeError as err:  # weights of other shapes than config.json's dims
            raise ERAError(f"ERA model {name!r}: the head weights do not match config.json "
                           f"({str(err).strip().splitlines()[0]})") from None
        missing = sorted(k for k in info["missing_keys"] if k.startswith("head."))
        if missing:  # transformers would leave them uninitialised and only print a report
            raise ERAError(f"ERA model {name!r}: model.safetensors lacks head weights {', '.join(missing[:4])}"
                           f"{' …' if len(missing) > 4 else ''} (does config.json's head_type "
                           f"{model.config.head_type!r} match the weights?)")
        #: the Hub commit these weights came from (None for a directory): evaluation results record it
        model.hub_commit = resolved_revision(name, kwargs.get("revision"))
        model.attach_encoders(lora_source=(name, kwargs.get("revision")), **encoder_kwargs)
        return (model, info) if with_info else model

    def attach_encoders(self, lora_source: tuple[str, str | None] | None = None, **encoder_kwargs: Any) -> None:
        """Load the frozen base encoders named in the config (and the anchor encoder when used)."""
        cfg = self.config
        model, tok, cfg.query_encoder_revision = _load_frozen(cfg.query_encoder, cfg.query_encoder_revision,
                                                              cfg.query_dim, "query", **encoder_kwargs)
        if cfg.lora:
            model = self._wrap_lora(model, lora_source)
        self.query_encoder, self.query_tokenizer = model, tok
        if cfg.anchor:
            self.anchor_encoder, self.anchor_tokenizer, cfg.document_encoder_revision = _load_frozen(
                cfg.document_encoder, cfg.document_encoder_revision, cfg.document_dim, "document", **encoder_kwargs)
        self.to(self.head_device)

    def _wrap_lora(self, model: torch.nn.Module, lora_source: tuple[str, str | None] | None) -> torch.nn.Module:
        import peft

        if lora_source is not None:
            source, revision = lora_source
            try:
                return peft.PeftModel.from_pretrained(model, source, subfolder=LORA_SUBFOLDER, revision=revision)
            except (OSError, ValueError) as err:
                raise ERAError(f"ERA model {source!r} uses LoRA but its adapter ({LORA_SUBFOLDER}/) cannot be loaded: "
                               f"{str(err).splitlines()[0]}") from None
        if not isinstance(self.config.lora, dict):
            raise ERAError(f"lora must be True or a dict of peft.LoraConfig settings, got {self.config.lora!r}")
        settings = {**DEFAULT_LORA, **self.config.lora}
        settings.setdefault("target_modules", _attention_modules(model))
        try:
            return peft.get_peft_model(model, peft.LoraConfig(**settings))
        except (TypeError, ValueError) as err:  # peft's own checks (unknown field, r <= 0, no matching module)
            raise ERAError(f"bad lora settings {self.config.lora!r}: {str(err).splitlines()[0]}") from None

    @property
    def head_device(self) -> torch.device:
        return next(self.head.parameters()).device

    # ------------------------------------------------------------------ inference
    def adapt(self, query_embeddings: np.ndarray | torch.Tensor,
              anchor_embeddings: np.ndarray | torch.Tensor | None = None) -> np.ndarray | torch.Tensor:
        """Apply the head to query-encoder embeddings computed earlier (numpy in → numpy out)."""
        as_numpy = isinstance(query_embeddings, np.ndarray)
        x = _as_tensor(query_embeddings, self.config.query_dim, "query embeddings", self.head_device)
        anchor = None
        if self.config.anchor:
            if anchor_embeddings is None:
                raise ERAError("this adapter is anchored: pass anchor_embeddings (the document encoder's embeddings "
                               "of the same queries) or use encode_queries()")
            anchor = _as_tensor(anchor_embeddings, self.config.document_dim, "anchor embeddings", self.head_device)
            if anchor.shape[0] != x.shape[0]:
                raise ERAError(f"got {anchor.shape[0]} anchor embeddings for {x.shape[0]} query embeddings")
        y = self.head(x, anchor)
        return y.detach().cpu().numpy() if as_numpy else y

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                anchor_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids of (formatted) queries → L2-normalised document-space embeddings."""
        self._require_encoders()
        from .text_encoding import pool

        hidden = self.query_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        x = pool(hidden, attention_mask, self.config.query_pooling).float()
        if self.config.normalize_query_embeddings:
            x = torch.nn.functional.normalize(x, dim=-1)
        return self.adapt(x, anchor_embeddings)

    def encode_queries(
        self,
        queries: Sequence[str],
        instruction: str | Sequence[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        """Encode queries into the document encoder's space; returns float32 (n, document_dim).

        ``instruction``: None (the config's default instruction), one string, or one per query.
        """
        return self.encode_queries_with_raw(queries, instruction, batch_size, show_progress_bar)[0]

    def encode_queries_with_raw(
        self,
        queries: Sequence[str],
        instruction: str | Sequence[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_queries` and the query encoder's own embeddings it started from (the head's input, what
        re-ranking compares documents with): float32 ``(n, document_dim)`` and ``(n, query_dim)``."""
        self._require_encoders()
        queries = check_texts(queries, "queries", allow_blank=False)
        if instruction is None:
            instruction = self.config.default_instruction
        formatted = format_queries(queries, instruction, self.config.query_format)
        x = self.encode_raw_queries(formatted, batch_size=batch_size, show_progress_bar=show_progress_bar).numpy()
        anchor = None
        if self.config.anchor:
            anchor = self.encode_anchor_queries(queries, instruction, batch_size, show_progress_bar).numpy()
        with torch.inference_mode():
            return self.adapt(x, anchor), x

    def encode_raw_queries(self, formatted: Sequence[str], batch_size: int = 32,
                           show_progress_bar: bool | None = None) -> torch.Tensor:
        """Query-encoder embeddings of already formatted query texts (the head's input)."""
        cfg = self.config
        return encode_texts(self.query_encoder, self.query_tokenizer, formatted, pooling=cfg.query_pooling,
                            normalize=cfg.normalize_query_embeddings, max_length=cfg.query_max_length,
                            batch_size=batch_size, show_progress_bar=show_progress_bar, desc="Encoding queries")

    def encode_anchor_queries(self, queries: Sequence[str], instruction: str | Sequence[str] | None,
                              batch_size: int = 32, show_progress_bar: bool | None = None) -> torch.Tensor:
        """The document encoder's own embeddings of the queries (the anchor of anchored heads)."""
        cfg = self.config
        texts = format_queries(queries, instruction, cfg.document_query_format)
        return encode_texts(self.anchor_encoder, self.anchor_tokenizer, texts, pooling=cfg.document_pooling,
                            normalize=cfg.normalize_document_embeddings, max_length=cfg.document_max_length,
                            batch_size=batch_size, show_progress_bar=show_progress_bar, desc="Encoding queries (anchor)")

    def _require_encoders(self) -> None:
        if self.query_encoder is None or (self.config.anchor and self.anchor_encoder is None):
            raise ERAError("the base encoders are not attached; call model.attach_encoders() first")

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save config + head safetensors (+ LoRA adapter); never the frozen encoders' weights.

        Everything is written into a temp folder inside ``save_directory`` first, then each file is synced and
        moved into place (a rename), so a crash leaves every file either as it was or complete.
        """
        if not str(save_directory).strip():
            raise ERAError("save_directory is empty: give a folder")
        out = Path(save_directory)
        if out.exists() and not out.is_dir():
            raise ERAError(f"{str(out)!r} is a file, not a folder to save the model in")
        out.mkdir(parents=True, exist_ok=True)
        kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if k.startswith("head.")}
        kwargs.setdefault("safe_serialization", True)
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", out.name)  # transformers would name the repo after the temp folder
        tmp = Path(tempfile.mkdtemp(prefix=".era-model-", dir=out))
        try:
            super().save_pretrained(tmp, **kwargs)
            if self.config.lora and self.query_encoder is not None:
                self.query_encoder.save_pretrained(tmp / LORA_SUBFOLDER)
            for path in sorted(tmp.rglob("*")):
                if path.is_file():
                    target = out / path.relative_to(tmp)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(path, "rb") as f:
                        os.fsync(f.fileno())
                    os.chmod(path, 0o666 & ~_UMASK)  # mkdtemp-private files get a plain open()'s mode
                    os.replace(path, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_frozen(model_id: str, revision: str | None, dim: int, role: str, **kwargs: Any) -> tuple[Any, Any, str | None]:
    """Load a base encoder, check its width against the head, freeze it."""
    model, tokenizer, resolved = load_encoder(model_id, revision, **kwargs)
    if model.config.hidden_size != dim:
        side = "input" if role == "query" else "output"
        raise ERAError(f"the head expects {dim}-d {side} but {role} encoder {model_id!r} "
                       f"gives {model.config.hidden_size}-d embeddings")
    model.requires_grad_(False)
    return model, tokenizer, resolved


def _attention_modules(model: torch.nn.Module) -> list[str]:
    """Names of the attention projections LoRA should target in this encoder."""
    candidates = ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "q", "k", "v")
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [c for c in candidates if c in leaves]
    if not found:
        raise ERAError(f"cannot find attention projections for LoRA among {sorted(leaves)}; "
                       "pass lora={'target_modules': [...]}")
    return found


def _as_tensor(x: Any, dim: int, what: str, device: torch.device) -> torch.Tensor:
    try:
        t = torch.as_tensor(x, dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ERAError(f"{what} must be a float array of shape (n, {dim}), got {type(x).__name__} "
                       f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if t.ndim != 2 or t.shape[1] != dim:
        raise ERAError(f"{what} must have shape (n, {dim}); got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ERAError(f"{what} hold NaN or infinite values")
    return t


def _check_model_dir(path: Path) -> None:
    """Clear errors for directories that are not (complete) ERA models."""
    import json

    config = path / "config.json"
    if not config.is_file():
        raise ERAError(f"{path} is not an ERA model directory: no config.json")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ERAError(f"{config} is not valid JSON: {err}") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != ERAConfig.model_type:
        raise ERAError(f"{path} is not an ERA model directory: config.json has model_type {model_type!r}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ERAError(f"{path} has no model.safetensors (the adapter head); the model directory is incomplete")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                f.get_tensor(key)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise ERAError(f"{weights} is damaged or truncated: {err}") from None
