"""Turning texts into embeddings: validation, query formatting, pooling and the batched loop.

Shared by the query side (``ERAModel``) and the document side (``DocumentEncoder``).
Self-contained: travels with saved models as remote code.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .configuration_era import POOLINGS, resolve_query_format
from .errors import ERAError

OFFLINE_HINT = ("Without Hub access (HF_HUB_OFFLINE=1), the model must already be in the Hugging Face cache: "
                "`era-hf models install` seeds the default models, or run `hf download MODEL_ID` on a connected "
                "machine and copy its cache.")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Show a progress bar by default from this many texts on.
PROGRESS_BAR_MIN_TEXTS = 256


def check_texts(texts: Any, what: str, allow_blank: bool) -> list[str]:
    """Validate a list of texts; ``what`` names them in errors (e.g. ``"queries"``)."""
    if isinstance(texts, str):
        raise ERAError(f"{what} must be a list of strings, not a single string (wrap it in a list)")
    if isinstance(texts, Mapping):
        raise ERAError(f"{what} must be a list of strings, not a {type(texts).__name__} (pass list(d.values()))")
    try:
        texts = list(texts)
    except TypeError:
        raise ERAError(f"{what} must be a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ERAError(f"{what}[{i}] is {type(t).__name__}, expected str")
        if not allow_blank and not t.strip():
            raise ERAError(f"{what}[{i}] is empty or whitespace only")
        surrogate = _SURROGATE.search(t)
        if surrogate:
            raise ERAError(f"{what}[{i}] holds an unpaired surrogate ({surrogate.group()!r}): not valid Unicode")
    return texts


def format_queries(queries: Sequence[str], instructions: str | Sequence[str] | None, query_format: str) -> list[str]:
    """Apply a query format to each query with its instruction.

    An empty instruction means no prefix at all, as in the reference
    (``Instruct: {instruction}\\nQuery: {query}`` only when there is an instruction).

    Example:
        >>> format_queries(["what is lift?"], "Retrieve abstracts.", "reference")
        ['Instruct: Retrieve abstracts.\\nQuery: what is lift?']
        >>> format_queries(["what is lift?"], "Retrieve abstracts.", "none")
        ['what is lift?']
    """
    template = resolve_query_format(query_format)
    if instructions is None or isinstance(instructions, str):
        instructions = [instructions or ""] * len(queries)
    else:
        if isinstance(instructions, Mapping) or not hasattr(instructions, "__iter__"):
            raise ERAError(f"instruction must be a string, None or a list of them (one per query), got "
                           f"{type(instructions).__name__}")
        instructions = list(instructions)
        if len(instructions) != len(queries):
            raise ERAError(f"got {len(instructions)} instructions for {len(queries)} queries; pass one per query, "
                           "a single string, or None")
        for i, ins in enumerate(instructions):
            if ins is not None and not isinstance(ins, str):
                raise ERAError(f"instruction[{i}] is {type(ins).__name__}, expected str or None")
    out = []
    for q, ins in zip(queries, instructions):
        if ins and "{instruction}" in template:
            out.append(template.format(instruction=ins, query=q))
        elif "{instruction}" in template:
            out.append(q)
        else:
            out.append(template.format(query=q))
    return out


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states (batch, seq, dim) into one vector per text."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last_token":
        if bool(attention_mask[:, -1].all()):  # left padding: the last position is real everywhere
            return hidden[:, -1]
        last = attention_mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ERAError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")


def detect_pooling(model_id: str, revision: str | None = None) -> str:
    """Read the pooling of a sentence-transformers model (``1_Pooling/config.json``); default ``mean``."""
    from transformers.utils import cached_file

    try:
        path = cached_file(model_id, "1_Pooling/config.json", revision=revision,
                           _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except OSError:
        path = None
    if not path:
        return "mean"
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("pooling_mode_lasttoken"):
        return "last_token"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def load_encoder(model_id: str, revision: str | None = None, **kwargs: Any) -> tuple[Any, Any, str | None]:
    """Load ``AutoModel`` + ``AutoTokenizer``; returns (model, tokenizer, resolved revision).

    Raises ERAError with the way out when the model cannot be found (e.g. offline and not cached).
    """
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModel.from_pretrained(model_id, revision=revision, **kwargs)
    except SafetensorError as err:  # a truncated or corrupted weights file, e.g. in the cache
        raise ERAError(f"encoder {model_id!r}: its weights file is damaged ({str(err).splitlines()[0]}); re-seed "
                       "it (`era-hf models install --force` for the default models) or download it again") from None
    except (OSError, ValueError) as err:  # ValueError: a folder without a model's config or tokenizer
        raise encoder_load_error(model_id, revision, err) from None
    model.eval()
    return model, tokenizer, resolved_revision(model_id, revision)


def encoder_load_error(model_id: str, revision: str | None, err: Exception, what: str | None = None) -> ERAError:
    """The one-line error for an encoder transformers could not load: offline and not cached, a folder that is not
    a model, or a file. ``what`` names it (default ``encoder 'ID'``), e.g. with the argument that gave it."""
    import os

    what = what or f"encoder {model_id!r}"
    reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    path = os.path.expanduser(str(model_id))
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            reason = "no config.json"
        return ERAError(f"{what} is a directory but not a transformers model with its tokenizer ({reason}); pass a "
                        "Hub id or a folder written by save_pretrained")
    if os.path.exists(path):
        return ERAError(f"{what} is a file, not a model: pass a Hub id or a model folder")
    return ERAError(f"cannot load {what} (revision {revision or 'main'}): {reason}. {OFFLINE_HINT}")


def looks_like_path(ref: str) -> bool:
    """Whether ``ref`` can only be a local path, never a Hub id (``org/name`` or ``name``): absolute, starting with
    ``.`` or ``~``, or with more than one ``/``."""
    import os

    return os.path.isabs(ref) or ref.startswith((".", "~")) or ref.count("/") > 1


def resolved_revision(model_id: str, revision: str | None = None) -> str | None:
    """The commit actually loaded for a Hub id (its cache snapshot name); None for a local path."""
    import os

    from transformers.utils import cached_file

    if os.path.isdir(model_id):
        return None
    path = cached_file(model_id, "config.json", revision=revision)
    parts = os.path.normpath(path).split(os.sep)
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else revision


def encode_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    pooling: str,
    normalize: bool,
    max_length: int,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    desc: str = "Encoding",
) -> torch.Tensor:
    """Embed texts: length-sorted batches under ``torch.inference_mode``; returns float32 (n, dim) on CPU.

    Sorting by token length keeps padding (wasted compute) low on mixed-length inputs.
    Texts longer than ``max_length`` tokens are truncated with one warning.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ERAError(f"batch_size must be a positive integer, got {batch_size!r}")
    limit = getattr(tokenizer, "model_max_length", None)
    limit = limit if isinstance(limit, int) and limit < 1_000_000 else getattr(model.config, "max_position_embeddings",
                                                                                 None)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0 or \
            (limit is not None and max_length > limit):
        raise ERAError(f"max_length must be a positive integer of at most {limit} (this model's limit), "
                       f"got {max_length!r}")
    dim = model.config.hidden_size
    if len(texts) == 0:
        return torch.zeros(0, dim, dtype=torch.float32)
    lengths = np.array([len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, truncation=False,
                                                       verbose=False)["input_ids"]])
    too_long = int((lengths > max_length).sum())
    if too_long:
        warnings.warn(f"{too_long} of {len(texts)} texts are longer than max_length={max_length} tokens "
                      "and were truncated", stacklevel=3)
    order = np.argsort(-lengths, kind="stable")
    if show_progress_bar is None:
        show_progress_bar = len(texts) >= PROGRESS_BAR_MIN_TEXTS
    device = next(model.parameters()).device
    out = torch.empty(len(texts), dim, dtype=torch.float32)
    batches = range(0, len(texts), batch_size)
    if show_progress_bar:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, unit="batch")
    with torch.inference_mode():
        for start in batches:
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state
            emb = pool(hidden, enc["attention_mask"], pooling).float()
            if normalize:
                emb = F.normalize(emb, dim=-1)
            out[torch.as_tensor(idx)] = emb.cpu()
    return out
