"""Export an ERA model as a sentence-transformers (6.x) model with ``encode_query`` / ``encode_document``.

The exported model is ``SentenceTransformer(modules=[Router, ERAHead])``:

* ``Router`` (``Router.for_query_document``) routes
  - ``task="query"`` to ``Transformer(query encoder) → Pooling → Normalize`` (for an anchored model:
    :class:`ERAAnchoredQueryInput`, which also embeds the query with the document encoder: the anchor);
  - ``task="document"`` (the default route) to ``Transformer(document encoder) → Pooling → Normalize``,
    i.e. exactly the encoder the document index is built with.
* :class:`ERAHead` applies the adapter head (saved as safetensors) to query embeddings only, and
  passes document embeddings through.

The query format becomes the ``"query"`` prompt (the prefix of the template, with the model's
default instruction); :func:`query_prompt` gives the prompt for another instruction.

This file only imports the self-contained remote-code files (``heads``, ``errors``,
``configuration_era``, ``text_encoding``), torch and sentence-transformers, so it is copied into the
exported directory with them and ``SentenceTransformer(path, trust_remote_code=True)`` works without
``era_hf`` installed.

Example:
    >>> from era_hf import ERAModel
    >>> from era_hf.sentence_transformers_export import export_sentence_transformers
    >>> model = ERAModel.from_pretrained("runs/era")  # doctest: +SKIP
    >>> export_sentence_transformers(model, "runs/era-st")  # doctest: +SKIP
    >>> from sentence_transformers import SentenceTransformer
    >>> st = SentenceTransformer("runs/era-st", trust_remote_code=True)  # doctest: +SKIP
    >>> st.encode_query(["how do wings produce lift?"]).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as _load_safetensors_model
from safetensors.torch import save_model as _save_safetensors_model
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    InputModule,
    Module,
    Normalize,
    Pooling,
    Router,
    Transformer,
)

from .configuration_era import resolve_query_format
from .errors import ERAError
from .heads import build_head
from .text_encoding import format_queries

#: The files this module needs at load time (itself + its relative imports), copied into exports.
CODE_FILES = ("sentence_transformers_export.py", "configuration_era.py", "errors.py", "heads.py", "text_encoding.py")
CODE_MODULE = "sentence_transformers_export"
#: era_hf pooling name → sentence-transformers pooling mode.
ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}
HEAD_WEIGHTS = "model.safetensors"


def query_prompt(config: Any, instruction: str | None = None) -> str:
    """The sentence-transformers prompt (prefix) for ``instruction`` under the model's query format.

    ``instruction=None`` uses the config's default instruction. An empty instruction gives no prefix
    for templates with ``{instruction}``, as :func:`~era_hf.text_encoding.format_queries` does.

    Example:
        >>> from era_hf import ERAConfig
        >>> query_prompt(ERAConfig(query_format="reference"), "Find the paper.")
        'Instruct: Find the paper.\\nQuery: '
        >>> query_prompt(ERAConfig(query_format="none"), "ignored")
        ''
    """
    config = getattr(config, "config", config)
    if instruction is None:
        instruction = config.default_instruction or ""
    template = resolve_query_format(config.query_format)
    prefix, _, suffix = template.partition("{query}")
    if suffix:
        raise ERAError(f"query_format {config.query_format!r} has text after {{query}}; sentence-transformers "
                       "prompts are prefixes, so this model cannot be exported")
    if "{query}" in prefix:
        raise ERAError(f"query_format {config.query_format!r} uses {{query}} twice; cannot be exported")
    marker = "\x00QUERY\x00"
    formatted = format_queries([marker], instruction, config.query_format)[0]
    return formatted[: formatted.index(marker)]


def _instruction_from_prompt(prompt: str | None, query_format: str, default_instruction: str) -> str:
    """Recover the instruction from a query prompt (to format the anchor text the same way as era_hf)."""
    template = resolve_query_format(query_format)
    prefix = template.partition("{query}")[0]
    if "{instruction}" not in prefix:
        return default_instruction
    if not prompt:
        return ""
    pattern = "".join("(?P<instruction>.*)" if part == "{instruction}" else re.escape(part)
                      for part in re.split(r"(\{instruction\})", prefix) if part)
    match = re.fullmatch(pattern, prompt, flags=re.DOTALL)
    if match is None:
        raise ERAError(f"the prompt {prompt!r} does not follow this model's query format {query_format!r}; "
                       "build it with query_prompt(config, instruction)")
    return match.group("instruction")


# ---------------------------------------------------------------------------------------------- modules
class ERAHead(Module):
    """The ERA adapter head as a sentence-transformers module (applied to ``task="query"`` only).

    Reads ``sentence_embedding`` (the normalised query-encoder embedding) and, when anchored,
    ``anchor_embedding`` (the document encoder's embedding of the query); writes the L2-normalised
    document-space embedding back to ``sentence_embedding``. Other tasks pass through unchanged.
    """

    config_keys = ["head_type", "in_dim", "out_dim", "head_kwargs", "anchored"]
    forward_kwargs = {"task"}

    def __init__(self, head_type: str, in_dim: int, out_dim: int, head_kwargs: dict[str, Any] | None = None,
                 anchored: bool = False) -> None:
        super().__init__()
        self.head_type, self.in_dim, self.out_dim = head_type, int(in_dim), int(out_dim)
        self.head_kwargs, self.anchored = dict(head_kwargs or {}), bool(anchored)
        self.head = build_head(head_type, self.in_dim, self.out_dim, **self.head_kwargs)

    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs: Any) -> dict[str, Any]:
        task = task if task is not None else features.get("task")
        if task != "query":
            return features
        x = features["sentence_embedding"]
        anchor = features.get("anchor_embedding") if self.anchored else None
        if self.anchored and anchor is None:
            raise ERAError("this ERA head is anchored but no anchor embedding reached it; "
                           "the query route must be ERAAnchoredQueryInput")
        param = next(self.head.parameters())
        y = self.head(x.to(param.dtype), None if anchor is None else anchor.to(param.dtype))
        features["sentence_embedding"] = y
        return features

    def get_embedding_dimension(self) -> int:
        return self.out_dim

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        _save_safetensors_model(self, os.path.join(output_path, HEAD_WEIGHTS))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> ERAHead:
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path, **hub)
        module = cls(**config)
        weights = cls.load_file_path(model_name_or_path, filename=HEAD_WEIGHTS, **hub)
        if weights is None:
            raise ERAError(f"{model_name_or_path}/{subfolder}: {HEAD_WEIGHTS} (the ERA head) is missing")
        _load_safetensors_model(module, weights, strict=True)
        return module


class ERAAnchoredQueryInput(InputModule):
    """Query route of an anchored ERA model: the query encoder on the formatted query and the
    document encoder on the query formatted with ``document_query_format`` (the anchor).

    Outputs ``sentence_embedding`` (query encoder, pooled, normalised if configured) and
    ``anchor_embedding`` (document encoder, pooled, normalised if configured).
    """

    config_keys = ["query_format", "document_query_format", "default_instruction", "query_pooling",
                   "anchor_pooling", "normalize_query", "normalize_anchor"]
    config_file_name = "era_anchored_config.json"
    QUERY_DIR, ANCHOR_DIR = "query_encoder", "anchor_encoder"
    ANCHOR_PREFIX = "anchor__"

    def __init__(self, query_transformer: Transformer, anchor_transformer: Transformer, *, query_format: str,
                 document_query_format: str, default_instruction: str = "", query_pooling: str = "mean",
                 anchor_pooling: str = "mean", normalize_query: bool = True, normalize_anchor: bool = True) -> None:
        super().__init__()
        self.query_transformer, self.anchor_transformer = query_transformer, anchor_transformer
        self.query_format, self.document_query_format = query_format, document_query_format
        self.default_instruction = default_instruction
        self.query_pooling, self.anchor_pooling = query_pooling, anchor_pooling
        self.normalize_query, self.normalize_anchor = bool(normalize_query), bool(normalize_anchor)
        self.query_pool = Pooling(query_transformer.get_embedding_dimension(), ST_POOLING[query_pooling])
        self.anchor_pool = Pooling(anchor_transformer.get_embedding_dimension(), ST_POOLING[anchor_pooling])

    @property
    def tokenizer(self) -> Any:
        return self.query_transformer.tokenizer

    @property
    def max_seq_length(self) -> int | None:
        return self.query_transformer.max_seq_length

    @property
    def modalities(self) -> list[str]:
        return ["text"]

    def get_embedding_dimension(self) -> int:
        return self.query_transformer.get_embedding_dimension()

    def preprocess(self, inputs: list[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        features = self.query_transformer.preprocess(texts, prompt=prompt, **kwargs)
        instruction = _instruction_from_prompt(prompt, self.query_format, self.default_instruction)
        anchor_texts = format_queries(texts, instruction, self.document_query_format)
        anchor = self.anchor_transformer.preprocess(anchor_texts, **kwargs)
        for key, value in anchor.items():
            features[self.ANCHOR_PREFIX + key] = value
        return features

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        anchor = {k[len(self.ANCHOR_PREFIX):]: v for k, v in features.items() if k.startswith(self.ANCHOR_PREFIX)}
        query = {k: v for k, v in features.items() if not k.startswith(self.ANCHOR_PREFIX)}
        query = self.query_pool(self.query_transformer(query))
        anchor = self.anchor_pool(self.anchor_transformer(anchor))
        q, a = query["sentence_embedding"], anchor["sentence_embedding"]
        if self.normalize_query:
            q = torch.nn.functional.normalize(q, dim=-1)
        if self.normalize_anchor:
            a = torch.nn.functional.normalize(a, dim=-1)
        out = {k: v for k, v in features.items() if not k.startswith(self.ANCHOR_PREFIX)}
        out.update(token_embeddings=query.get("token_embeddings"), sentence_embedding=q, anchor_embedding=a)
        return out

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        for sub, module in ((self.QUERY_DIR, self.query_transformer), (self.ANCHOR_DIR, self.anchor_transformer)):
            os.makedirs(os.path.join(output_path, sub), exist_ok=True)
            module.save(os.path.join(output_path, sub), safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> ERAAnchoredQueryInput:
        hub = {"token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        kwargs = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "model_kwargs", "processor_kwargs",
                                                          "config_kwargs", "backend")}
        subs = [Transformer.load(model_name_or_path, subfolder=Path(subfolder, name).as_posix(), **hub, **kwargs)
                for name in (cls.QUERY_DIR, cls.ANCHOR_DIR)]
        return cls(*subs, **config)


# ---------------------------------------------------------------------------------------------- export
def _transformer(model_id: str, revision: str | None, max_length: int, loaded: Any = None) -> Transformer:
    """A sentence-transformers Transformer module for an encoder (id + revision), optionally with the
    weights of an already loaded (e.g. LoRA-merged) model swapped in."""
    rev = {"revision": revision} if revision and not os.path.isdir(model_id) else {}
    try:
        module = Transformer(model_id, model_kwargs=dict(rev), processor_kwargs=dict(rev), config_kwargs=dict(rev),
                             max_seq_length=max_length)
    except OSError as err:
        raise ERAError(f"cannot load encoder {model_id!r} for the sentence-transformers export: "
                       f"{str(err).splitlines()[0]}") from None
    if loaded is not None:
        module.model = loaded
    return module


def _text_side(model_id: str, revision: str | None, max_length: int, pooling: str, normalize: bool,
               loaded: Any = None) -> list[Module]:
    transformer = _transformer(model_id, revision, max_length, loaded)
    modules: list[Module] = [transformer, Pooling(transformer.get_embedding_dimension(), ST_POOLING[pooling])]
    if normalize:
        modules.append(Normalize())
    return modules


def _merged_query_encoder(model: Any) -> Any:
    """The query encoder with its LoRA adapter merged in (a copy), or None without LoRA."""
    if not model.config.lora:
        return None
    encoder = model.query_encoder
    if encoder is None or not hasattr(encoder, "merge_and_unload"):
        raise ERAError("this ERA model uses LoRA but its query encoder is not attached; "
                       "load it with ERAModel.from_pretrained()")
    return copy.deepcopy(encoder).merge_and_unload()


def to_sentence_transformers(model: Any, device: str | None = None) -> SentenceTransformer:
    """Build a ``SentenceTransformer`` whose ``encode_query`` equals ``model.encode_queries`` and whose
    ``encode_document`` equals the document encoder (``DocumentEncoder``) of the model's config.

    Args:
        model: an :class:`~era_hf.ERAModel` (with its encoders attached; LoRA adapters are merged).
        device: device of the returned model (default: the head's device).
    """
    cfg = model.config
    if not hasattr(model, "head"):
        raise ERAError(f"expected an ERAModel, got {type(model).__name__}")
    prompt = query_prompt(cfg)  # validates the query format
    if getattr(cfg, "lexical_weight", 0.0):
        warnings.warn(f"this model searches in hybrid (BM25 weight {cfg.lexical_weight:g}: its config's "
                      "lexical_weight), which a sentence-transformers model cannot: the export gives the dense "
                      "embeddings only; search with era_hf's DocumentIndex(query_texts=..., lexical_weight=...) for "
                      "the hybrid ranking", stacklevel=2)
    merged = _merged_query_encoder(model)
    if cfg.anchor:
        query_route: list[Module] = [ERAAnchoredQueryInput(
            _transformer(cfg.query_encoder, cfg.query_encoder_revision, cfg.query_max_length, merged),
            _transformer(cfg.document_encoder, cfg.document_encoder_revision, cfg.document_max_length),
            query_format=cfg.query_format, document_query_format=cfg.document_query_format,
            default_instruction=cfg.default_instruction or "", query_pooling=cfg.query_pooling,
            anchor_pooling=cfg.document_pooling, normalize_query=cfg.normalize_query_embeddings,
            normalize_anchor=cfg.normalize_document_embeddings)]
    else:
        query_route = _text_side(cfg.query_encoder, cfg.query_encoder_revision, cfg.query_max_length,
                                 cfg.query_pooling, cfg.normalize_query_embeddings, merged)
    document_route = _text_side(cfg.document_encoder, cfg.document_encoder_revision, cfg.document_max_length,
                                cfg.document_pooling, cfg.normalize_document_embeddings)
    head = ERAHead(cfg.head_type, cfg.query_dim, cfg.document_dim, dict(cfg.head_kwargs), cfg.anchor)
    head.head.load_state_dict(model.head.state_dict())
    router = Router.for_query_document(query_modules=query_route, document_modules=document_route,
                                       default_route="document")
    st = SentenceTransformer(modules=[router, head], prompts={"query": prompt, "document": ""},
                             similarity_fn_name="cosine", device=device or str(model.head_device))
    st.eval()
    return st


def _portable_class_refs(directory: Path) -> None:
    """Point the saved module types of our classes at the copied code file (``sentence_transformers_export.X``)."""
    ours = ("ERAHead", "ERAAnchoredQueryInput")

    def fix(ref: str) -> str:
        module, _, name = ref.rpartition(".")
        return f"{CODE_MODULE}.{name}" if name in ours and module.endswith(CODE_MODULE) else ref

    for path in [directory / "modules.json", *sorted(directory.rglob("router_config.json"))]:
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            for entry in data:
                entry["type"] = fix(entry["type"])
        else:
            data["types"] = {k: fix(v) for k, v in data.get("types", {}).items()}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def check_export_target(path: str | os.PathLike, overwrite: bool, source: str | None = None) -> Path:
    """``path`` as a Path, or an ERAError when it cannot take an export: empty, a file, the ERA model's own
    directory (``source``), or a non-empty directory without ``overwrite``. Cheap: run it before loading a model."""
    if not str(path).strip():
        raise ERAError("the output directory is empty: give a path")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ERAError(f"output {str(path)!r} is a file, not a directory")
    if source and os.path.isdir(source) and path.exists() and path.resolve() == Path(source).resolve():
        raise ERAError(f"output {str(path)!r} is the ERA model's own directory; the export would replace it: "
                       "choose another output directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ERAError(f"{path} exists and is not empty; choose another output directory or pass --overwrite "
                       "(overwrite=True in Python)")
    return path


def export_sentence_transformers(model: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save :func:`to_sentence_transformers` of ``model`` to ``path`` (with the code it needs).

    Load it with ``SentenceTransformer(path, trust_remote_code=True)``; ``era_hf`` is not needed there.
    The directory holds full copies of both encoders (sentence-transformers loads modules from the
    directory), so it is as large as the two encoders together.
    """
    path = check_export_target(path, overwrite, getattr(model, "name_or_path", None))
    st = to_sentence_transformers(model)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        st.save(str(tmp), create_model_card=False)
        here = Path(__file__).resolve().parent
        for name in CODE_FILES:
            shutil.copyfile(here / name, tmp / name)
        _portable_class_refs(tmp)
        (tmp / "README.md").write_text(_readme(model.config), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _readme(cfg: Any) -> str:
    source = getattr(cfg, "_name_or_path", "") or "an ERA model"
    return (
        "---\nlibrary_name: sentence-transformers\npipeline_tag: sentence-similarity\ntags:\n- era\n"
        "- retrieval-adapter\n- sentence-transformers\n---\n\n"
        f"# ERA retrieval adapter (sentence-transformers export of {source})\n\n"
        f"Queries: `{cfg.query_encoder}` + the ERA head → the embedding space of `{cfg.document_encoder}`.\n"
        f"Documents: `{cfg.document_encoder}` (build your index with it; it is this model's document route).\n\n"
        "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        "model = SentenceTransformer(PATH_OR_REPO, trust_remote_code=True)\n"
        "q = model.encode_query([\"...\"])       # query encoder + ERA head\n"
        "d = model.encode_document([\"...\"])    # document encoder\n"
        "scores = model.similarity(q, d)\n```\n"
    )
