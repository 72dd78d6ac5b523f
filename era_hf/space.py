"""``era-hf space``: a Gradio search page for an ERA model over a fixed document index.

The page compares, for one query, the ERA model (strong query encoder + adapter head, into the
document encoder's space) with the cheap baseline (the document encoder itself on the plain
query) over the *same* fixed FAISS index. The corpus is embedded once, when the index is built;
the app only ever encodes queries.

Public pieces:

* :class:`SearchService` -- validation + batched search (one forward pass per side for a batch
  of queries); returns plain dicts, never raises for a bad query.
* :func:`build_app` -- the ``gr.Blocks`` page (+ the ``/search`` API endpoint) for a loaded
  model and index; :func:`load_app` -- the same from a model / index path or Hub repo id.
* ``register_cli`` -- ``era-hf space --model DIR_OR_REPO --index DIR_OR_REPO``.

Security: inputs are text and numbers only; nothing a user sends is used as a path; query and
instruction lengths and ``k`` are checked in the handler (server side); a failing search returns
an error message to the user who sent it and the app keeps serving.

Example:
    >>> from era_hf.space import load_app
    >>> demo = load_app("runs/quickstart/model", "runs/quickstart/index")  # doctest: +SKIP
    >>> demo.launch()  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import numbers
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from .errors import ERAError
from .rerank import add_rerank_arguments, rerank_from_arguments

logger = logging.getLogger(__name__)

#: Offline defaults of ``era-hf space``: what the quickstart writes on the built-in task.
DEFAULT_MODEL = "runs/quickstart/model"
DEFAULT_INDEX = "runs/quickstart/index"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

#: Server-side input limits (the textbox limits are a convenience only).
MAX_QUERY_CHARS = 2000
MAX_INSTRUCTION_CHARS = 1000
MAX_K = 50
DEFAULT_K = 10
#: Queue: most queries sharing one forward pass (also the requests admitted at once), requests waiting.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_QUEUE = 64
SNIPPET_CHARS = 280
CODE_SNIPPET_LINES = 8
MAX_EXAMPLES = 6

#: Example queries when neither the caller nor the index carries task queries
#: (phrased for the built-in ``builtin:stdlib-code`` task of the quickstart).
FALLBACK_EXAMPLES = (
    "Return the Python representation of a JSON document.",
    "Compute the greatest common divisor of two integers.",
    "Split a pathname into directory and file name.",
    "Parse a URL into six components.",
)

CSS = """
.era-header h1 { margin-bottom: 0.1em; }
.era-header p { margin-top: 0; opacity: 0.85; }
#status { min-height: 1.6em; }
#status.era-error, #status .era-error { color: var(--error-text-color, #b91c1c); }
.era-col { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
           background: var(--background-fill-primary); }
.era-col-head { display: flex; justify-content: space-between; align-items: baseline; gap: 8px;
                border-bottom: 1px solid var(--border-color-primary); padding-bottom: 6px; margin-bottom: 6px; }
.era-col-title { font-weight: 700; font-size: 1.05em; }
.era-col-sub { font-size: 0.82em; opacity: 0.75; }
.era-latency { font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap;
               background: var(--background-fill-secondary); border-radius: 6px; padding: 1px 7px; }
.era-hits { list-style: none; margin: 0; padding: 0; }
.era-hit { display: grid; grid-template-columns: 2.2em 1fr auto; gap: 8px; padding: 7px 0;
           border-bottom: 1px dashed var(--border-color-primary); }
.era-hit:last-child { border-bottom: none; }
.era-rank { font-weight: 700; opacity: 0.7; text-align: right; }
.era-title { font-weight: 600; }
.era-id { font-size: 0.78em; opacity: 0.6; margin-left: 4px; }
.era-snippet { font-size: 0.88em; opacity: 0.85; margin-top: 2px; overflow-wrap: anywhere; }
pre.era-snippet { white-space: pre-wrap; font-size: 0.78em; margin: 2px 0 0 0; padding: 4px 6px;
                  background: var(--background-fill-secondary); border-radius: 6px; max-height: 11em;
                  overflow: hidden; }
.era-score { font-variant-numeric: tabular-nums; font-size: 0.85em; opacity: 0.8; white-space: nowrap; }
.era-badge { font-size: 0.7em; font-weight: 700; border-radius: 4px; padding: 0 4px; margin-left: 4px;
             background: #dcfce7; color: #166534; vertical-align: middle; }
.era-empty { opacity: 0.6; font-style: italic; padding: 8px 0; }
"""


# ---------------------------------------------------------------------------------------- search
class SearchService:
    """Validated, batched search of a fixed index with an ERA model and the cheap baseline.

    Args:
        model: an :class:`~era_hf.ERAModel` with its encoders attached.
        index: a :class:`~era_hf.index.DocumentIndex` built with the model's document encoder.
        baseline_encoder: the document encoder for the baseline column; None = load
            ``config.document_encoder`` (reusing the model's own weights when it already holds
            that encoder, e.g. the anchor of an anchored head).
        instruction: the default instruction (None = the model config's ``default_instruction``).
        rerank: a :class:`~era_hf.rerank.Rerank`: the ERA column's first ``rerank.top_k`` results re-ranked with the
            query encoder on both sides (:class:`~era_hf.search.Searcher`; ``k`` is then at most ``top_k``).

    Raises:
        ERAError: the index was built with another document encoder (or dimension) than the
            model maps into.
    """

    def __init__(self, model: Any, index: Any, baseline_encoder: Any = None, *, instruction: str | None = None,
                 max_query_chars: int = MAX_QUERY_CHARS, max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
                 max_k: int = MAX_K, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, rerank: Any = None) -> None:
        from .search import Searcher

        # checks the index against the model; a batch of queries is one forward pass
        batch_size = max(32, max_batch_size) if isinstance(max_batch_size, int) else 32
        self.searcher = Searcher(model, index, rerank, batch_size=batch_size)
        self.model, self.index = model, index
        self.config = model.config
        self.baseline = baseline_encoder if baseline_encoder is not None else baseline_encoder_for(model)
        if int(self.baseline.dim) != index.dim:
            raise ERAError(f"the baseline encoder {self.baseline.model_id!r} gives {self.baseline.dim}-d embeddings "
                           f"but the index holds {index.dim}-d vectors")
        self.instruction = self.config.default_instruction if instruction is None else instruction
        self.max_query_chars, self.max_instruction_chars = max_query_chars, max_instruction_chars
        self.max_k = max(1, min(int(max_k), len(index)))
        if rerank is not None:  # only the re-ranked candidates have re-ranking scores
            self.max_k = min(self.max_k, rerank.top_k)
        # One forward pass at a time (torch already uses every core for one); queries arriving
        # meanwhile are encoded together in the next pass.
        self._lock = threading.Lock()
        self._position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
        self._batcher = _MicroBatcher(self._search_valid, max_batch_size)

    # -- validation ---------------------------------------------------------------------------
    def validate(self, query: Any, instruction: Any = None, k: Any = DEFAULT_K) -> tuple[str, str, int]:
        """Return (query, instruction, k) cleaned, or raise ERAError with a message for the user."""
        if query is None:
            raise ERAError("Please enter a query.")
        query = _bounded_text(query, "query", self.max_query_chars)
        if not query:
            raise ERAError("Please enter a query (it is empty).")
        instruction = _bounded_text(self.instruction if instruction is None else instruction, "instruction",
                                    self.max_instruction_chars)
        if k is None:
            k = DEFAULT_K
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k != int(k):
            raise ERAError(f"k must be a whole number between 1 and {self.max_k}, got {_short_repr(k)}.")
        k = int(k)
        if not 1 <= k <= self.max_k:
            raise ERAError(f"k must be between 1 and {self.max_k}, got {k}.")
        return query, instruction, k

    # -- search -------------------------------------------------------------------------------
    def search(self, query: Any, instruction: Any = None, k: Any = DEFAULT_K) -> dict[str, Any]:
        """One query (the dict of :meth:`search_batch`); thread-safe.

        Concurrent callers are batched: while one forward pass runs, the queries that arrive
        wait, and the next pass encodes all of them (up to ``max_batch_size``) together.
        """
        try:
            q, ins, k = self.validate(query, instruction, k)
        except ERAError as err:
            return _error_result(str(err), instruction if isinstance(instruction, str) and len(instruction) <= 200
                                 else None, k)
        return self._batcher.submit((q, ins, k))

    def search_batch(self, queries: Sequence[Any], instructions: Sequence[Any] | None = None,
                     ks: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Search several queries, each side in one forward pass; one result dict per query.

        Each dict: ``query``, ``instruction``, ``k``, ``error`` (None, or a message for the user),
        ``era`` and ``baseline`` (each ``{"latency_ms", "results": [{"rank", "id", "score",
        "title", "snippet"}]}``), ``batch_size`` (queries encoded together; the latencies are
        those of the whole batch). A bad query gets its ``error`` and does not affect the others.
        """
        n = len(queries)
        instructions = list(instructions) if instructions is not None else [None] * n
        ks = list(ks) if ks is not None else [DEFAULT_K] * n
        if len(instructions) != n or len(ks) != n:
            raise ERAError(f"got {n} queries, {len(instructions)} instructions and {len(ks)} k values")
        out: list[dict[str, Any] | None] = [None] * n
        valid: list[tuple[int, str, str, int]] = []
        for i, (q, ins, k) in enumerate(zip(queries, instructions, ks)):
            try:
                valid.append((i, *self.validate(q, ins, k)))
            except ERAError as err:
                out[i] = _error_result(str(err), ins if isinstance(ins, str) and len(ins) <= 200 else None, k)
        if valid:
            for (i, *_), res in zip(valid, self._search_valid([item[1:] for item in valid])):
                out[i] = res
        return out  # type: ignore[return-value]

    def _search_valid(self, items: Sequence[tuple[str, str, int]]) -> list[dict[str, Any]]:
        """Validated (query, instruction, k) items → results; a failure is retried per query."""
        try:
            return self._run(items)
        except Exception as err:  # noqa: BLE001 - isolate the failing query: retry one by one
            if len(items) == 1:
                return [_error_result(_failure_message(err), items[0][1], items[0][2])]
        out = []
        for item in items:
            try:
                out.append(self._run([item])[0])
            except Exception as err:  # noqa: BLE001
                out.append(_error_result(_failure_message(err), item[1], item[2]))
        return out

    def _run(self, items: Sequence[tuple[str, str, int]]) -> list[dict[str, Any]]:
        from .text_encoding import format_queries

        qs = [q for q, _, _ in items]
        ins = [i for _, i, _ in items]
        kmax = max(k for _, _, k in items)
        with self._lock:
            t0 = time.perf_counter()
            # hybrid search when the model was trained to use it (config.lexical_weight > 0), re-ranked on request
            era_scores, era_ids = self.searcher.search(qs, instruction=ins, k=kmax)
            t1 = time.perf_counter()
            base_texts = format_queries(qs, ins, getattr(self.config, "document_query_format", "none"))
            base_emb = self.baseline.encode(base_texts, batch_size=len(qs))
            base_scores, base_ids = self.index.search(base_emb, kmax)
            t2 = time.perf_counter()
        era_ms, base_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
        results = []
        for row, (q, ins_i, k) in enumerate(items):
            results.append({
                "query": q, "instruction": ins_i, "k": k, "error": None, "batch_size": len(items),
                "era": {"latency_ms": round(era_ms, 2), "results": self._hits(era_scores[row], era_ids[row], k)},
                "baseline": {"latency_ms": round(base_ms, 2),
                             "results": self._hits(base_scores[row], base_ids[row], k)},
            })
        return results

    def _hits(self, scores: Any, ids: Sequence[str], k: int) -> list[dict[str, Any]]:
        position = self._position
        hits = []
        for rank, (doc_id, score) in enumerate(zip(ids[:k], scores[:k]), 1):
            j = position[doc_id]
            hits.append({"rank": rank, "id": doc_id, "score": round(float(score), 4),
                         "title": self.index.titles[j], "snippet": make_snippet(self.index.texts[j])})
        return hits

    def describe(self) -> dict[str, Any]:
        """What the page shows about the setup (ids only; no local paths)."""
        cfg = self.config
        return {"query_encoder": cfg.query_encoder, "document_encoder": cfg.document_encoder,
                "head": cfg.head_type, "anchor": bool(cfg.anchor), "documents": len(self.index),
                "index_kind": self.index.kind, "lexical_weight": float(getattr(cfg, "lexical_weight", 0.0)),
                "rerank": self.searcher.rerank.to_dict() if self.searcher.rerank is not None else None}


class _MicroBatcher:
    """Joins concurrent calls into batches: while one batch runs, new items wait; the next caller
    to get the lock runs everything waiting (up to ``max_batch_size``) in one call of ``run``.

    No background thread: the callers themselves take turns running batches.
    """

    def __init__(self, run: Any, max_batch_size: int) -> None:
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ERAError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        self.run, self.max_batch_size = run, max_batch_size
        self._pending: list[tuple[Any, Future]] = []
        self._pending_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def submit(self, item: Any) -> Any:
        fut: Future = Future()
        with self._pending_lock:
            self._pending.append((item, fut))
        while not fut.done():
            with self._run_lock:
                if fut.done():
                    break
                with self._pending_lock:
                    batch = self._pending[:self.max_batch_size]
                    del self._pending[:self.max_batch_size]
                if not batch:
                    continue
                try:
                    results = self.run([it for it, _ in batch])
                    for (_, f), res in zip(batch, results):
                        f.set_result(res)
                except BaseException as err:  # noqa: BLE001 - hand the error to every waiting caller
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(err)
        return fut.result()


def baseline_encoder_for(model: Any) -> Any:
    """The cheap baseline: the model's document encoder on plain queries (shares loaded weights when it can)."""
    from .encoders import DocumentEncoder

    cfg = model.config
    kwargs = {"pooling": cfg.document_pooling, "normalize": cfg.normalize_document_embeddings,
              "max_length": cfg.document_max_length}
    if getattr(model, "anchor_encoder", None) is not None:
        return DocumentEncoder(model.anchor_encoder, model.anchor_tokenizer, cfg.document_encoder,
                               cfg.document_encoder_revision, **kwargs)
    same = (cfg.query_encoder == cfg.document_encoder and not cfg.lora
            and (cfg.document_encoder_revision in (None, cfg.query_encoder_revision))
            and getattr(model, "query_encoder", None) is not None)
    if same:
        return DocumentEncoder(model.query_encoder, model.query_tokenizer, cfg.document_encoder,
                               cfg.query_encoder_revision, **kwargs)
    return DocumentEncoder.from_pretrained(cfg.document_encoder, revision=cfg.document_encoder_revision, **kwargs)


def make_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A short preview: code keeps its first lines, prose is whitespace-collapsed and cut at a word."""
    text = text or ""
    if text.count("\n") >= 2 and re.search(r"^\s*(def |class |async def |@|import |from )", text, re.MULTILINE):
        lines = [ln.rstrip()[:120] for ln in text.strip("\n").splitlines()[:CODE_SNIPPET_LINES]]
        more = len(text.strip("\n").splitlines()) > CODE_SNIPPET_LINES
        return "\n".join(lines) + ("\n…" if more else "")
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return (cut or flat[:limit]) + " …"


def _error_result(message: str, instruction: Any = None, k: Any = None) -> dict[str, Any]:
    k = k if isinstance(k, int) and not isinstance(k, bool) else None
    return {"query": None, "instruction": instruction if isinstance(instruction, str) else None, "k": k,
            "error": message, "batch_size": 0,
            "era": {"latency_ms": None, "results": []}, "baseline": {"latency_ms": None, "results": []}}


def _failure_message(err: Exception) -> str:
    logger.exception("search failed")
    if isinstance(err, ERAError):
        return f"The search failed: {err}"
    return "The search failed because of an internal error; please try again (the error was logged)."


def _bounded_text(value: Any, what: str, limit: int) -> str:
    """``value`` stripped, or ERAError when it is not text or longer than ``limit`` characters."""
    if not isinstance(value, str):
        raise ERAError(f"The {what} must be text, got {_type_name(value)}.")
    if len(value) > limit:
        raise ERAError(f"The {what} is too long ({len(value):,} characters); the limit is {limit:,}.")
    return value.strip()


def _type_name(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def _short_repr(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


# ---------------------------------------------------------------------------------------- page
def _theme() -> Any:
    import gradio as gr

    # System fonts only: the default Google fonts would be fetched from the internet.
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald", neutral_hue="slate",
                          font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]).set(
        button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
        button_primary_text_color="white", block_label_text_weight="600")


def _blocks_class() -> type:
    import gradio as gr

    class ERASearchBlocks(gr.Blocks):
        """``gr.Blocks`` whose ``launch()`` defaults to this page's theme and CSS (Gradio 6 takes them there)."""

        def launch(self, *args: Any, **kwargs: Any) -> Any:
            from starlette.middleware import Middleware

            kwargs.setdefault("theme", _theme())
            kwargs.setdefault("css", CSS)
            app_kwargs = dict(kwargs.get("app_kwargs") or {})
            app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(TextOnly)]
            kwargs["app_kwargs"] = app_kwargs
            return super().launch(*args, **kwargs)

    return ERASearchBlocks


def _holds_file(value: Any) -> bool:
    """Whether decoded JSON holds a Gradio file object anywhere (``{"meta": {"_type": "gradio.FileData"}, …}``)."""
    if isinstance(value, dict):
        meta = value.get("meta")
        return (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData") or \
            any(_holds_file(v) for v in value.values())
    return isinstance(value, list) and any(_holds_file(v) for v in value)


class TextOnly:
    """ASGI middleware: the page takes text only, so Gradio's upload route and any request body holding a Gradio
    file object are refused (HTTP 400) before Gradio would write an upload into its cache or fetch a URL there."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", not scope["path"].rstrip("/").endswith("/upload")
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            refused = scope["path"].rstrip("/").endswith("/upload") or _holds_file(json.loads(body or b"null"))
        except (ValueError, RecursionError):
            refused = False  # not JSON: Gradio answers it as it would
        if refused:
            from starlette.responses import JSONResponse

            response = JSONResponse({"detail": "This page accepts text only (no files)."}, status_code=400)
            return await response(scope, receive, send)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def render_results(result: Mapping[str, Any] | None, side: str, other: Mapping[str, Any] | None = None,
                   subtitle: str = "") -> str:
    """HTML of one result column (``side`` = ``"era"`` or ``"baseline"``); every text is escaped."""
    label = "ERA" if side == "era" else "Baseline"
    block = (result or {}).get(side) or {}
    hits = block.get("results") or []
    latency = block.get("latency_ms")
    lat = f"{latency:.1f} ms" if isinstance(latency, (int, float)) else "–"
    other_ids = {h["id"] for h in ((other or {}).get("results") or [])}
    score_title = "hybrid score: z-scored cosine + BM25" if "BM25" in subtitle else "cosine similarity"
    parts = [f'<div class="era-col" id="{side}-col" data-count="{len(hits)}">',
             '<div class="era-col-head"><div>',
             f'<div class="era-col-title">{label}</div>',
             f'<div class="era-col-sub">{html.escape(subtitle)}</div></div>',
             f'<span class="era-latency" title="query encoding + index search">{lat}</span></div>']
    if not hits:
        parts.append('<div class="era-empty">No results yet.</div>')
    else:
        parts.append('<ol class="era-hits">')
        for h in hits:
            badge = ('<span class="era-badge" title="not in the other list">new</span>'
                     if other_ids and h["id"] not in other_ids else "")
            snippet = h.get("snippet") or ""
            snippet_html = (f'<pre class="era-snippet">{html.escape(snippet)}</pre>' if "\n" in snippet
                            else f'<div class="era-snippet">{html.escape(snippet)}</div>')
            title = h.get("title") or snippet.split("\n", 1)[0][:80] or h["id"]
            parts.append(
                f'<li class="era-hit" data-doc-id="{html.escape(str(h["id"]), quote=True)}">'
                f'<span class="era-rank">{int(h["rank"])}</span>'
                f'<div><span class="era-title">{html.escape(title)}</span>'
                f'<span class="era-id">{html.escape(str(h["id"]))}</span>{badge}{snippet_html}</div>'
                f'<span class="era-score" title="{score_title}">{float(h["score"]):.3f}</span></li>')
        parts.append("</ol>")
    parts.append("</div>")
    return "".join(parts)


def _status_markdown(result: Mapping[str, Any], n_docs: int, rerank_top_k: int | None = None) -> str:
    if result.get("error"):
        return f"⚠️ **{_md_escape(result['error'])}**"
    era, base = result["era"]["latency_ms"], result["baseline"]["latency_ms"]
    batch = result.get("batch_size", 1)
    shared = f" (encoded in a batch of {batch} queries)" if batch > 1 else ""
    encoded = ("only the query is encoded" if rerank_top_k is None else
               f"the query is encoded, and each of ERA's top {rerank_top_k} candidates is embedded by the query "
               "encoder the first time it is one")
    return (f"Top {result['k']} of {n_docs:,} documents · ERA {era:.1f} ms · baseline {base:.1f} ms{shared}. "
            f"The index is fixed: {encoded}.")


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)


def index_task_info(index: Any) -> tuple[str | None, list[str]]:
    """(instruction, example queries) recorded with the index, when it records them."""
    meta = getattr(index, "metadata", None) or {}
    if not isinstance(meta, Mapping):
        return None, []
    instruction = meta.get("instruction") if isinstance(meta.get("instruction"), str) else None
    examples = meta.get("example_queries") or meta.get("queries") or []
    examples = [q for q in examples if isinstance(q, str) and q.strip()] if isinstance(examples, list) else []
    return instruction, examples


def task_examples(task: Any, n: int = MAX_EXAMPLES) -> list[str]:
    """A few queries of a :class:`~era_hf.tasks.RetrievalTask` (judged ones first, short ones)."""
    texts = list(task.queries["text"])
    qids = list(task.queries["_id"])
    by_id = dict(zip(qids, texts))
    judged = [by_id[q] for q in task.judged_query_ids() if q in by_id] if hasattr(task, "judged_query_ids") else texts
    pool = [t for t in (judged or texts) if t and len(t) <= 200]
    step = max(1, len(pool) // n) if pool else 1
    return pool[::step][:n]


def build_app(model: Any, index: Any, *, baseline_encoder: Any = None, instruction: str | None = None,
              examples: Sequence[str] | None = None, title: str = "ERA search",
              max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, concurrency_limit: int | None = None,
              max_queue_size: int = DEFAULT_MAX_QUEUE, default_k: int = DEFAULT_K, rerank: Any = None) -> Any:
    """The search page for a loaded model and index; returns a ``gr.Blocks`` (call ``.launch()``).

    Args:
        model / index / baseline_encoder: see :class:`SearchService` (checked for compatibility here).
        instruction: prefilled instruction; None = the index's recorded task instruction, else the
            model config's ``default_instruction``.
        examples: example queries; None = the index's recorded task queries, else a fixed few.
        max_batch_size: most queries encoded in one forward pass.
        concurrency_limit: search requests admitted at once (None = ``max_batch_size``); they
            share one forward pass at a time, so admitted requests are batched together.
        max_queue_size: requests waiting in Gradio's queue before new ones are refused.
        rerank: re-ranking of the ERA column (:class:`SearchService`); None = off.

    Endpoints: the page's Search button / Enter, and ``/search`` for ``gradio_client``
    (``client.predict(query, instruction, k, api_name="/search")`` → the dict of
    :meth:`SearchService.search_batch`; a bad request gets a dict with ``error`` set). Both go
    through the same batcher.

    Raises:
        ERAError: the index was built with another document encoder than the model's.
    """
    import gradio as gr

    index_instruction, index_examples = index_task_info(index)
    if instruction is None:
        instruction = index_instruction if index_instruction is not None else model.config.default_instruction
    service = SearchService(model, index, baseline_encoder, instruction=instruction, max_batch_size=max_batch_size,
                            rerank=rerank)
    concurrency_limit = max_batch_size if concurrency_limit is None else concurrency_limit
    examples = list(examples) if examples is not None else (index_examples or list(FALLBACK_EXAMPLES))
    examples = [e for e in examples if isinstance(e, str) and e.strip()][:MAX_EXAMPLES]
    default_k = max(1, min(default_k, service.max_k))
    info = service.describe()
    n_docs = info["documents"]
    era_sub = f"{_short_id(info['query_encoder'])} + {info['head']} adapter" + (
        f" + BM25 (hybrid, weight {info['lexical_weight']:g})" if info["lexical_weight"] else "") + (
        f", top {rerank.top_k} re-ranked by {_short_id(info['query_encoder'])}" if rerank is not None else "")
    base_sub = f"{_short_id(info['document_encoder'])} on the plain query"

    def ui_search(query: Any, instruction: Any, k: Any) -> tuple[str, str, str]:
        """The Search button: status line + the two result columns."""
        r = service.search(query, instruction, k)
        if r["error"]:
            gr.Warning(r["error"])
        status = _status_markdown(r, n_docs, rerank.top_k if rerank is not None else None)
        return (status, render_results(r, "era", r.get("baseline"), era_sub),
                render_results(r, "baseline", r.get("era"), base_sub))

    def search(query: str, instruction: str | None = None, k: int = DEFAULT_K) -> dict:
        """Search the fixed index with the ERA model and with the baseline; returns both ranked lists.

        Returns a dict: query, instruction, k, error (None or a message), batch_size, and era /
        baseline, each {latency_ms, results: [{rank, id, score, title, snippet}]}.
        """
        return service.search(query, instruction, k)

    with _blocks_class()(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {html.escape(title)}\n"
            f"A strong query encoder (**{_md_escape(info['query_encoder'])}**) with an ERA adapter searches a "
            f"fixed index of **{n_docs:,}** documents embedded once by the cheap document encoder "
            f"(**{_md_escape(info['document_encoder'])}**); next to it, that document encoder alone on the query.",
            elem_classes=["era-header"])
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                query = gr.Textbox(label="Query", placeholder="Type a question or a description…", lines=2,
                                   max_lines=6, max_length=MAX_QUERY_CHARS, elem_id="query", autofocus=True)
                instr = gr.Textbox(label="Instruction (the task, given to the query encoder)",
                                   value=instruction, lines=1, max_lines=3, max_length=MAX_INSTRUCTION_CHARS,
                                   elem_id="instruction")
            with gr.Column(scale=1, min_width=200):
                k = gr.Slider(1, service.max_k, value=default_k, step=1, label="Top k", elem_id="top-k")
                button = gr.Button("Search", variant="primary", elem_id="search-button")
        if examples:
            gr.Examples(examples=[[e] for e in examples], inputs=[query], label="Example queries",
                        examples_per_page=MAX_EXAMPLES)
        status = gr.Markdown("", elem_id="status")
        with gr.Row(equal_height=False):
            era_out = gr.HTML(render_results(None, "era", subtitle=era_sub), elem_id="era-results")
            base_out = gr.HTML(render_results(None, "baseline", subtitle=base_sub), elem_id="baseline-results")
        event = {"fn": ui_search, "inputs": [query, instr, k], "outputs": [status, era_out, base_out],
                 "concurrency_limit": concurrency_limit, "concurrency_id": "era-search", "show_progress": "minimal"}
        button.click(api_visibility="private", **event)
        query.submit(api_visibility="private", **event)
        gr.api(search, api_name="search", concurrency_limit=concurrency_limit, concurrency_id="era-search")
        gr.Markdown(
            f"<small>Scores are cosine similarities in the document encoder's space"
            f"{' (ERA in hybrid search: z-scored cosine plus weighted z-scored BM25)' if info['lexical_weight'] else ''}"
            f". A latency covers query "
            f"encoding and index search of one batch (concurrent queries are encoded together). Queries are "
            f"limited to {MAX_QUERY_CHARS:,} characters. API: "
            f"<code>Client(url).predict(query, instruction, k, api_name=\"/search\")</code>.</small>")
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue_size)
    demo.era_service = service  # for tests and embedding applications
    return demo


def _short_id(model_id: str) -> str:
    return str(model_id).rstrip("/").rsplit("/", 1)[-1]


def load_app(model: str = DEFAULT_MODEL, index: str = DEFAULT_INDEX, *, model_revision: str | None = None,
             index_revision: str | None = None, task: str | None = None, **kwargs: Any) -> Any:
    """Load the model and index (local directory or Hub repo id) and :func:`build_app`.

    ``task``: an optional task spec (``load_task``) for the instruction and example queries.

    Raises:
        ERAError: missing model / index, or an index built with another document encoder.
    """
    from . import ERAModel
    from .index import DocumentIndex

    for what, value in (("model", model), ("index", index)):
        if not isinstance(value, str) or not value.strip():
            raise ERAError(f"no {what} given: pass --{what} DIR_OR_REPO")
    _check_default(model, DEFAULT_MODEL, "model")
    _check_default(index, DEFAULT_INDEX, "index")
    loaded_index = DocumentIndex.load(index, revision=index_revision)
    era = ERAModel.from_pretrained(model, revision=model_revision)
    era.eval()
    if task is not None and kwargs.get("examples") is None:
        from .tasks import load_task

        t = load_task(task)
        kwargs["examples"] = task_examples(t)
        if kwargs.get("instruction") is None:
            kwargs["instruction"] = t.instruction
    return build_app(era, loaded_index, **kwargs)


def _check_default(value: str, default: str, what: str) -> None:
    import os

    if value == default and not os.path.exists(default):
        raise ERAError(f"the default {what} {default} does not exist: run the quickstart first (it writes "
                       f"{DEFAULT_MODEL} and {DEFAULT_INDEX}), or pass --{what} DIR_OR_REPO")


def error_app(message: str, title: str = "ERA search") -> Any:
    """A page that only shows a start-up error (used by the Space instead of crashing with a traceback)."""
    import gradio as gr

    with _blocks_class()(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {html.escape(title)}\n\n⚠️ **The app could not start:** {_md_escape(message)}",
                    elem_id="status")
    return demo


# ---------------------------------------------------------------------------------------- CLI
def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "space", help="launch the Gradio search page (ERA vs. the cheap baseline over a fixed index)",
        description="Launch the search page locally. Defaults are what the quickstart writes "
                    f"({DEFAULT_MODEL}, {DEFAULT_INDEX}).")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"ERA model directory or Hub repo id (default {DEFAULT_MODEL})")
    p.add_argument("--model-revision", default=None, help="revision of a Hub model")
    p.add_argument("--index", default=DEFAULT_INDEX,
                   help=f"index directory or Hub dataset repo id (default {DEFAULT_INDEX})")
    p.add_argument("--index-revision", default=None, help="revision of a Hub index dataset")
    p.add_argument("--task", default=None, help="task spec for the instruction and example queries (optional)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--share", choices=("no", "yes"), default="no",
                   help="create a public gradio.live link (needs internet; default no)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                   help=f"queries encoded in one forward pass (default {DEFAULT_MAX_BATCH_SIZE})")
    p.add_argument("--concurrency", type=int, default=None,
                   help="search requests admitted at once, batched together (default: --max-batch-size)")
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                   help=f"requests waiting before new ones are refused (default {DEFAULT_MAX_QUEUE})")
    add_rerank_arguments(p, "ERA's", "it embeds each candidate's text the first time it is one")
    p.set_defaults(func=run_space)


def run_space(args: argparse.Namespace) -> int:
    for name in ("port", "max_batch_size", "concurrency", "max_queue"):
        value = getattr(args, name)
        if value is None:
            continue
        if value < 1 or (name == "port" and value > 65535):
            raise ERAError(f"--{name.replace('_', '-')} out of range: {value}")
    rerank = rerank_from_arguments(args.rerank_top_k, args.rerank_weight)
    demo = load_app(args.model, args.index, model_revision=args.model_revision, index_revision=args.index_revision,
                    task=args.task, max_batch_size=args.max_batch_size, concurrency_limit=args.concurrency,
                    max_queue_size=args.max_queue, rerank=rerank)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share == "yes", ssr_mode=False)
    except OSError as err:  # Gradio: the port is taken or the host is not an address of this machine
        raise ERAError(f"cannot serve on {args.host}:{args.port}: {err} (is --port in use, is --host an address "
                       "of this machine?)") from None
    return 0
