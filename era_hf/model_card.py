"""Model cards for ERA models and dataset cards for document indexes.

Cards are rendered from the Jinja templates in the top-level ``model_cards/`` folder through
``huggingface_hub.ModelCard`` / ``ModelCardData`` (and ``DatasetCard`` for indexes), so the YAML
metadata is what the Hub expects: ``library_name: era_hf``, ``pipeline_tag: sentence-similarity``,
both encoders as ``base_model``, tags, license, datasets and a ``model-index`` with one
``EvalResult`` per task (and the macro mean) for nDCG@10, MAP@100 and Recall@100 — for the model
AND for the baselines scored on the same test queries (metric names say which method; the
baselines' metric types end in ``_baseline_doc`` / ``_baseline_query``). The body shows the same
numbers side by side with the gain over the cheap index.

Inputs, all read from the model directory: ``config.json``, ``training_log.json`` (when present),
``loss_curves.png`` (when present) and the evaluation JSON written by ``era-hf evaluate --output``
(``eval_results.json`` in the directory, or passed explicitly).

Example:
    >>> from era_hf.model_card import build_model_card
    >>> card = build_model_card("runs/era", repo_id="me/era-minilm")  # doctest: +SKIP
    >>> card.data.library_name  # doctest: +SKIP
    'era_hf'
    >>> card.save("runs/era/README.md")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from .atomic import require_directory, sha256_file
from .errors import ERAError

MODEL_TEMPLATE = "era_model_card.md"
INDEX_TEMPLATE = "era_index_card.md"
#: Environment variable naming a folder of card templates (overrides the packaged ones).
TEMPLATES_ENV = "ERA_HF_MODEL_CARDS"
EVAL_FILE = "eval_results.json"
TRAINING_LOG = "training_log.json"
LOSS_PLOT = "loss_curves.png"
DEFAULT_LICENSE = "apache-2.0"
#: (era_hf metric name, display name, model-index metric type)
CARD_METRICS = (("ndcg@10", "nDCG@10", "ndcg_at_10"), ("map@100", "MAP@100", "map_at_100"),
                ("recall@100", "Recall@100", "recall_at_100"))
HEADLINE = "ndcg@10"
TASK_TYPE, TASK_NAME = "text-retrieval", "Retrieval"
MODEL_TAGS = ("era", "retrieval-adapter", "sentence-transformers", "feature-extraction", "sentence-similarity",
              "retrieval", "embedding-adapter", "custom_code")
INDEX_TAGS = ("era", "faiss", "document-index", "retrieval", "embeddings")
#: Training-argument fields that cannot change the trained weights (not shown as hyper-parameters).
NEUTRAL_FIELDS = {"output_dir", "resume", "overwrite", "cache_dir", "encode_batch_size", "cpu", "quiet", "plot",
                  "stop_after", "alignment.checkpoint_every", "adaptation.checkpoint_every"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_LICENSES = {"apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
             "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
             "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
             "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
             "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
             "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0",
             "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0",
             "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl",
             "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openrail++", "osl-3.0", "postgresql",
             "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license",
             "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other"}


# ------------------------------------------------------------------------------------------ templates
def templates_dir() -> Path:
    """The folder holding the card templates.

    Looked up in order: ``$ERA_HF_MODEL_CARDS``; ``model_cards/`` beside the ``era_hf`` package
    (source tree, editable install); ``<prefix>/share/era_hf/model_cards`` (a wheel install, from
    the ``[tool.setuptools.data-files]`` entry of pyproject.toml).
    """
    candidates = []
    if os.environ.get(TEMPLATES_ENV):
        candidates.append(Path(os.environ[TEMPLATES_ENV]))
    candidates.append(Path(__file__).resolve().parent.parent / "model_cards")
    for prefix in dict.fromkeys([sysconfig.get_path("data"), sys.prefix, sys.base_prefix,
                                 sysconfig.get_path("data", f"{os.name}_user")]):
        if prefix:
            candidates.append(Path(prefix) / "share" / "era_hf" / "model_cards")
    for folder in candidates:
        if (folder / MODEL_TEMPLATE).is_file():
            return folder
    raise ERAError("cannot find the model card templates (model_cards/era_model_card.md); looked in "
                   + ", ".join(str(c) for c in candidates) + f". Set {TEMPLATES_ENV} to the folder holding them")


def template_path(name: str = MODEL_TEMPLATE) -> Path:
    path = templates_dir() / name
    if not path.is_file():
        raise ERAError(f"card template {path} is missing")
    return path


# ------------------------------------------------------------------------------------------ small helpers
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ERAError(f"{what} {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ERAError(f"{what} {path} is not valid JSON: {err}") from None



def _is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_HUB_ID.match(value)) and not os.path.exists(value)


def _short(model_id: str) -> str:
    return str(model_id).rstrip("/").rsplit("/", 1)[-1]


def _model_url(model_id: str) -> str:
    return f"https://huggingface.co/{model_id}" if _is_hub_id(model_id) else "#"


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _check_value(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ERAError(f"{where} is {value!r}, expected a finite number")
    return float(value)


def dataset_of_source(source: str | None) -> tuple[str | None, str | None]:
    """(Hub dataset id, config) of a task source, or (None, None) for local / built-in tasks.

    Example:
        >>> dataset_of_source("MAIR-Bench/MAIR-Queries:Competition-Math/test")
        ('MAIR-Bench/MAIR-Queries', 'Competition-Math')
        >>> dataset_of_source("BeIR/scifact")
        ('BeIR/scifact', None)
        >>> dataset_of_source("builtin:stdlib-code")
        (None, None)
    """
    if not source:
        return None, None
    repo, _, rest = str(source).partition(":")
    if not _is_hub_id(repo):
        return None, None
    return repo, (rest.split("/")[0] or None) if rest else None


# ------------------------------------------------------------------------------------------ evaluation
def load_eval_runs(source: Any) -> list[dict[str, Any]]:
    """The evaluated runs of an evaluation JSON (``era-hf evaluate --output``): a file path, or the
    loaded object (``{"runs": [...]}``, a list of results, or one result of ``evaluate_suite``)."""
    where = "evaluation results"
    if isinstance(source, (str, os.PathLike)):
        where = f"evaluation file {source}"
        source = _read_json(Path(source), "evaluation file")
    if isinstance(source, Mapping) and "runs" in source:
        runs = source["runs"]
    elif isinstance(source, Mapping) and "method" in source:
        runs = [source]
    else:
        runs = source
    if not isinstance(runs, list) or not runs:
        raise ERAError(f"{where}: expected the JSON written by `era-hf evaluate --output` (with a non-empty 'runs' list)")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not isinstance(run.get("method"), Mapping) \
                or not isinstance(run.get("tasks"), Mapping) or not run["tasks"]:
            raise ERAError(f"{where}: run {i} is not an evaluation result (needs 'method' and 'tasks')")
        for name, task in run["tasks"].items():
            if not isinstance(task, Mapping) or not isinstance(task.get("metrics"), Mapping):
                raise ERAError(f"{where}: run {i}, task {name!r} has no 'metrics'")
            for key, value in task["metrics"].items():
                _check_value(value, f"{where}: run {i}, task {name!r}, metric {key}")
        for key, value in (run.get("macro") or {}).items():
            _check_value(value, f"{where}: run {i}, macro {key}")
    return [dict(r) for r in runs]


def _method_key(run: Mapping[str, Any]) -> str:
    m = run["method"]
    return f"baseline:{m.get('name')}" if m.get("type") == "baseline" else f"era:{m.get('model')}"


def _select_model_run(runs: list[dict], model_dir: Path | None, head_sha: str | None) -> dict:
    era = [r for r in runs if r["method"].get("type") == "era"]
    if not era:
        raise ERAError("the evaluation results contain no ERA model run (only baselines); run "
                       "`era-hf evaluate --model MODEL_DIR --baseline doc --baseline query --output eval_results.json`")
    if len(era) == 1:
        return era[0]
    if head_sha:
        same = [r for r in era if r["method"].get("head_sha256") == head_sha]
        if len(same) == 1:
            return same[0]
    if model_dir is not None:
        same = [r for r in era if r["method"].get("model") and
                Path(str(r["method"]["model"])).resolve() == model_dir.resolve()]
        if len(same) == 1:
            return same[0]
    raise ERAError(f"the evaluation results contain {len(era)} ERA runs and none can be matched to this model's "
                   "head weights; pass an evaluation file with one ERA run")


def _split_of(task: Mapping[str, Any]) -> Any:
    split = task.get("split")
    return tuple(split["test"]) if isinstance(split, Mapping) and "test" in split else None


def compare_runs(runs: list[dict], config: Mapping[str, Any] | None = None, model_dir: Path | None = None,
                 head_sha: str | None = None) -> dict[str, Any]:
    """Pick this model's run and the methods compared with it; check they share the test split.

    Raises ERAError when a compared method was scored on other test queries (another seed, label
    ratio or query list), misses one of the model's tasks, when the evaluation was made for other
    encoders, or for other head weights (``head_sha256`` recorded by ``era-hf evaluate``).
    """
    model_run = _select_model_run(runs, model_dir, head_sha)
    recorded = model_run["method"].get("head_sha256")
    if head_sha and recorded and recorded != head_sha:
        raise ERAError(f"the evaluation results were computed for other head weights (sha256 {recorded[:12]}…, "
                       f"this model has {head_sha[:12]}…); re-run `era-hf evaluate` on this model")
    if config is not None:
        enc = model_run.get("encoders") or {}
        for side in ("query_encoder", "document_encoder"):
            used = (enc.get(side) or {}).get("model_id")
            if used and used != config.get(side):
                raise ERAError(f"the evaluation results were computed with {side.replace('_', ' ')} {used!r}, "
                               f"but this model uses {config.get(side)!r}")
    others = [r for r in runs if r is not model_run]
    seen = {_method_key(model_run)}
    compared = []
    for run in others:
        key = _method_key(run)
        if key in seen:
            continue
        seen.add(key)
        for field in ("label_ratio", "seed"):
            if run.get(field) != model_run.get(field):
                raise ERAError(f"{_label(run, model_run)} was evaluated with {field}={run.get(field)!r} but the "
                               f"model with {field}={model_run.get(field)!r}: not the same test queries")
        for name, task in model_run["tasks"].items():
            theirs = run["tasks"].get(name)
            if theirs is None:
                raise ERAError(f"{_label(run, model_run)} has no result for task {name!r}; evaluate every method on "
                               "the same tasks")
            mine, other = _split_of(task), _split_of(theirs)
            if mine is not None and other is not None and mine != other:
                raise ERAError(f"task {name!r}: {_label(run, model_run)} was scored on other test queries than the "
                               "model; evaluate all methods in one `era-hf evaluate` run")
        compared.append(run)
    order = {"baseline:doc": 0, "baseline:query": 1}
    compared.sort(key=lambda r: order.get(_method_key(r), 2))
    return {"model": model_run, "compared": compared}


def _label(run: Mapping[str, Any], model_run: Mapping[str, Any] | None = None) -> str:
    m = run["method"]
    enc = run.get("encoders") or (model_run or {}).get("encoders") or {}
    q = _short((enc.get("query_encoder") or {}).get("model_id", "query encoder"))
    d = _short((enc.get("document_encoder") or {}).get("model_id", "document encoder"))
    if m.get("type") == "baseline":
        return {"doc": f"{d} → {d} (no adapter, zero-shot)",
                "query": f"{q} → {q} (corpus re-encoded, zero-shot)"}.get(m.get("name"), f"baseline {m.get('name')}")
    recipe = m.get("recipe") or (m.get("init") if m.get("init") not in (None, "random") else None)
    return f"ERA {q} → {d}" + (f" ({recipe})" if recipe else "")


def _description(run: Mapping[str, Any], is_model: bool) -> str:
    m = run["method"]
    if is_model:
        return "this model: the query encoder + the trained head, searching the document encoder's index."
    if m.get("type") == "baseline" and m.get("name") == "doc":
        return ("the document encoder embeds the queries too: the same cheap index with no adapter "
                "(what this model improves on).")
    if m.get("type") == "baseline" and m.get("name") == "query":
        return ("the query encoder on queries and documents: needs the whole corpus re-encoded with the big "
                "model (an upper reference, not a drop-in alternative).")
    return f"another ERA model ({m.get('model')})."


def _metric_suffix(run: Mapping[str, Any]) -> str:
    m = run["method"]
    if m.get("type") == "baseline":
        return f"_baseline_{m.get('name')}"
    return "_other_" + re.sub(r"[^a-z0-9]+", "_", str(m.get("recipe") or m.get("model") or "era").lower()).strip("_")


def _eval_results(cmp: dict[str, Any]) -> list[Any]:
    """``EvalResult`` per task (and macro) and metric, for the model and each compared method."""
    from huggingface_hub import EvalResult

    model_run = cmp["model"]
    tasks = model_run["tasks"]
    out = []
    for run in [model_run, *cmp["compared"]]:
        is_model = run is model_run
        suffix = "" if is_model else _metric_suffix(run)
        who = "" if is_model else f" — {_label(run, model_run)}"
        rows: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = [
            (name, tasks[name], run["tasks"][name]["metrics"]) for name in tasks]
        if len(tasks) > 1:
            rows.append(("__macro__", {}, run.get("macro") or {}))
        for name, task_info, metrics in rows:
            if name == "__macro__":
                dataset = {"dataset_type": "era-macro-average",
                           "dataset_name": f"Macro average over {len(tasks)} tasks ({', '.join(tasks)})"}
            else:
                repo, config = dataset_of_source(task_info.get("source"))
                dataset = {"dataset_type": repo or name, "dataset_name": name, "dataset_config": config,
                           "dataset_revision": task_info.get("revision") if repo else None}
            for key, display, mtype in CARD_METRICS:
                if key not in metrics:
                    continue
                value = _check_value(metrics[key], f"metric {key} of task {name} ({_label(run, model_run)})")
                out.append(EvalResult(task_type=TASK_TYPE, task_name=TASK_NAME, dataset_split="test",
                                      dataset_args={"label_ratio": model_run.get("label_ratio"),
                                                    "seed": model_run.get("seed")},
                                      metric_type=mtype + suffix, metric_name=display + who,
                                      metric_value=round(value, 6), **dataset))
    if not out:
        raise ERAError("the evaluation results have none of the card metrics (nDCG@10, MAP@100, Recall@100)")
    return out


def _source_text(source: Any) -> str:
    """A task source for the card: a Hub link, a built-in name, or a local directory's name (no local paths)."""
    repo, _ = dataset_of_source(source)
    if repo:
        return f"[`{source}`](https://huggingface.co/datasets/{repo})"
    if not source:
        return ""
    if str(source).startswith("builtin:"):
        return f"`{source}`"
    return f"local directory `{Path(str(source)).name}`"


def _eval_section(cmp: dict[str, Any]) -> dict[str, Any]:
    """Markdown tables: model vs compared methods (headline and per task), and the gain line."""
    model_run = cmp["model"]
    tasks = model_run["tasks"]
    runs = [model_run, *cmp["compared"]]
    doc = _compared_baseline(cmp, "doc")
    multi = len(tasks) > 1
    scope = f"macro average over {len(tasks)} tasks" if multi else f"task {next(iter(tasks))}"

    def headline(run: Mapping[str, Any]) -> Mapping[str, Any]:
        return (run.get("macro") or {}) if multi else run["tasks"][next(iter(tasks))]["metrics"]

    lines = [f"| method ({scope}) | " + " | ".join(d for _, d, _ in CARD_METRICS) + " |",
             "|---|" + "---:|" * len(CARD_METRICS)]
    for run in runs:
        cells = []
        for key, _, _ in CARD_METRICS:
            value = headline(run).get(key)
            text = "–" if value is None else f"{value:.4f}"
            if run is model_run and value is not None:
                text = f"**{text}**"
                if doc is not None and headline(doc).get(key) is not None:
                    text += f" ({value - headline(doc)[key]:+.4f})"
            cells.append(text)
        name = f"**{_label(run, model_run)} — this model**" if run is model_run else _label(run, model_run)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    if doc is not None:
        table += "\n\nIn parentheses: the change over the document encoder alone on the same index."
    gain_line = ""
    if doc is not None and headline(doc).get(HEADLINE) is not None and headline(model_run).get(HEADLINE) is not None:
        a, b = headline(doc)[HEADLINE], headline(model_run)[HEADLINE]
        rel = f", {100 * (b - a) / a:+.1f}%" if a > 0 else ""
        gain_line = (f"**nDCG@10 ({scope}) on the same document index: {a:.4f} with the document encoder alone "
                     f"→ {b:.4f} with this adapter ({b - a:+.4f}{rel}).**")
        if b < a:
            gain_line += " The adapter is worse than no adapter on these test queries."
    query_line = _query_ahead_line(cmp, model_run)
    tasks_table = ""
    if multi:
        head = ["task", "domain", "test queries", *[f"{_label(r, model_run)}" + (" (this model)" if r is model_run
                                                                                 else "") for r in runs]]
        if doc is not None:
            head.append("Δ vs no adapter")
        rows = ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
        for name, info in tasks.items():
            vals = [r["tasks"][name]["metrics"].get(HEADLINE) for r in runs]
            cells = [name, str(info.get("domain", "")), str(info.get("n_queries", ""))]
            cells += ["–" if v is None else f"{v:.4f}" for v in vals]
            if doc is not None:
                d = doc["tasks"][name]["metrics"].get(HEADLINE)
                cells.append("–" if d is None or vals[0] is None else f"{vals[0] - d:+.4f}")
            rows.append("| " + " | ".join(cells) + " |")
        tasks_table = "nDCG@10 per task:\n\n" + "\n".join(rows)
    else:
        name, info = next(iter(tasks.items()))
        tasks_table = (f"The task:\n\n| task | domain | source | test queries | documents |\n|---|---|---|---:|---:|\n"
                       f"| {name} | {info.get('domain', '')} | {_source_text(info.get('source'))} | "
                       f"{info.get('n_queries', '')} | {info.get('n_documents', '')} |")
    ratio = model_run.get("label_ratio")
    return {
        "table": table,
        "gain_line": gain_line,
        "query_line": query_line,
        "tasks_table": tasks_table,
        "methods": [{"label": _label(r, model_run) + (" — this model" if r is model_run else ""),
                     "description": _description(r, r is model_run)} for r in runs],
        "seed": model_run.get("seed"),
        "label_ratio_pct": f"{100 * ratio:g}%" if isinstance(ratio, (int, float)) else str(ratio),
        "has_baselines": bool(cmp["compared"]),
    }


def _compared_baseline(cmp: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in cmp["compared"] if _method_key(r) == f"baseline:{name}"), None)


def _query_ahead_line(cmp: dict[str, Any], model_run: Mapping[str, Any]) -> str:
    """The tasks where the query encoder on both sides (corpus re-encoded) has a higher nDCG@10 than the model:
    the limit of a head over the cheap index, said where the evaluation measured it."""
    query = _compared_baseline(cmp, "query")
    if query is None:
        return ""
    ahead = []
    for name, info in model_run["tasks"].items():
        q = ((query["tasks"].get(name) or {}).get("metrics") or {}).get(HEADLINE)
        m = info["metrics"].get(HEADLINE)
        if q is not None and m is not None and q > m:
            ahead.append(f"{name} ({q:.4f} against {m:.4f})")
    if not ahead:
        return ""
    line = (f"{_label(query, model_run)} has a higher nDCG@10 than this adapter on " + ", ".join(ahead) + ". There "
            "the query encoder ranks the documents better than the query vector this model finds in the cheap index.")
    if not model_run["method"].get("lora"):  # re-ranking compares with the base query encoder: not for LoRA
        line += (" Re-ranking the first results with the query encoder (era_hf's `Searcher(model, index, Rerank())`) "
                 "moves toward its ranking without re-indexing, at the cost of query-encoder passes over the "
                 "candidates' texts.")
    return line


# ------------------------------------------------------------------------------------------ training log
def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _training_section(log: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters, data and stage summaries from ``training_log.json`` (tolerant of its layout)."""
    args = None
    for key in ("arguments", "args", "training_arguments", "hyperparameters", "config"):
        if isinstance(log.get(key), Mapping):
            args = log[key]
            break
    if args is None:
        args = {k: v for k, v in log.items() if not isinstance(v, (list, Mapping))}
    flat = _flatten(args)
    hyper = []
    for name, value in flat.items():
        if name in NEUTRAL_FIELDS or name.rsplit(".", 1)[-1] in ("tasks", "alignment_tasks", "output_dir"):
            continue
        if isinstance(value, list):
            if len(value) > 12 or not value:
                continue
            value = ", ".join(map(str, value))
        hyper.append((name, _fmt(value)))
    tasks = args.get("tasks") or log.get("tasks") or []
    task_names = [t.get("name", str(t)) if isinstance(t, Mapping) else str(t) for t in tasks] \
        if isinstance(tasks, list) else [str(tasks)]
    data_bits = []
    if task_names:
        data_bits.append("Tasks: " + ", ".join(_task_text(t) for t in task_names) + ".")
    aligned = args.get("alignment_tasks") or []
    if isinstance(aligned, list) and aligned:
        data_bits.append("Stage 1 aligned on " + ", ".join(_task_text(t) for t in aligned) + " instead: documents and "
                         "query texts outside the test split, no labels.")
    ratio = args.get("label_ratio", log.get("label_ratio"))
    if isinstance(ratio, (int, float)):
        data_bits.append(f"Labels: {100 * ratio:g}% of each task's judged queries (label ratio r = {ratio:g}; "
                         f"split seed {args.get('split_seed', args.get('seed', 42))}), taken outside the "
                         "validation 10% and the test 50%; the test queries are never seen in training.")
    elif ratio is not None:
        data_bits.append(f"Label ratio: {ratio}.")
    for rec in log.get("unlabelled_queries") or []:
        if isinstance(rec, Mapping):
            data_bits.append(f"Query log without judgments: {_fmt(rec.get('added'))} queries of "
                             f"`{Path(str(rec.get('file', ''))).name}` (SHA-256 {str(rec.get('sha256', ''))[:12]}…) "
                             f"added to task {rec.get('task')} as unjudged queries, read by stage 1 only.")
    for key in ("n_train_queries", "n_train_pairs", "n_alignment_texts", "n_val_queries"):
        if isinstance(log.get(key), (int, float)):
            data_bits.append(f"{key.replace('_', ' ')}: {log[key]}.")
    stages = []
    stage_src = log.get("stages")
    if isinstance(stage_src, Mapping):
        stage_items = list(stage_src.items())
    elif isinstance(stage_src, list):
        stage_items = [(s.get("name", f"stage {i + 1}") if isinstance(s, Mapping) else f"stage {i + 1}", s)
                       for i, s in enumerate(stage_src)]
    else:
        stage_items = [(k, log[k]) for k in ("alignment", "adaptation", "stage1", "stage2")
                       if isinstance(log.get(k), Mapping) and k not in (args or {})]
    for name, info in stage_items:
        if not isinstance(info, Mapping):
            continue
        facts = [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in info.items()
                 if isinstance(v, (int, float, str, bool)) and k != "name" and len(str(v)) < 80]
        init = info.get("init")
        distilled = init.get("distillation") if isinstance(init, Mapping) else None
        if isinstance(distilled, Mapping):  # the anchored score map, distilled: no weight picked on labels
            losses = [distilled.get(k) for k in ("loss_first_tenth", "loss_last_tenth")]
            trend = f", loss {losses[0]:.4f} → {losses[1]:.4f} over the first → last tenth of the steps" \
                if all(isinstance(v, (int, float)) for v in losses) else ""
            teacher, weights = "both encoders' fused scores", f"teacher weight {_fmt(distilled.get('teacher_weight'))}"
            lexical = distilled.get("lexical_weight")
            if isinstance(lexical, (int, float)) and lexical:
                teacher, weights = f"{teacher} and BM25", f"{weights}, lexical weight {_fmt(lexical)}"
            facts.append(f"score map distilled from {teacher} ({weights}, {_fmt(distilled.get('steps'))} "
                         f"steps{trend}; no labels)")
        elif isinstance(init, Mapping) and "weight" in init:  # the anchored score map: say how its weight was picked
            guard = init.get("guard")
            kept = f" among the weights the clarity guard kept ({', '.join(guard['kept'])})" \
                if isinstance(guard, Mapping) and isinstance(guard.get("kept"), list) else ""
            facts.append(_picked(init, "weight", "score-map weight", kept))
        if name == "shrinkage" and "scale" in info:
            facts = [_picked(info, "scale", "the trained correction scaled toward the cheap baseline by")]
        if name == "lexical_weight" and "lexical_weight" in info:
            facts = [_picked(info, "lexical_weight", "BM25's weight in hybrid search", zero="dense search only")]
        if facts:
            stages.append(f"**{name}**: " + ", ".join(facts))
    mode = args.get("mode") or log.get("mode")
    recipe = args.get("recipe") or log.get("recipe")
    negatives = {"corpus": "every unjudged document of its task", "random": "random negatives"}.get(
        flat.get("adaptation.negatives"), "mined hard negatives")
    summary = {
        "both": "Stage 1 aligns the head on identical texts (documents embedded by both encoders, no labels); "
                f"stage 2 adapts it on the labelled queries with InfoNCE of each positive against {negatives}.",
        "label_only": "Trained on the labelled queries only (stage 2 from a random head; the 'Embedding Adapter' "
                      "baseline of the paper).",
        "alignment_only": "Trained by self-supervised alignment only (stage 1, no labels).",
    }.get(str(mode), "Trained with era_hf.")
    if mode:
        summary += f" Mode `{mode}`" + (f", recipe `{recipe}`." if recipe else ".")
    seconds = log.get("seconds") or log.get("total_seconds")
    if isinstance(seconds, (int, float)):
        summary += f" Training took {seconds:.0f} s."
    return {"summary": summary, "hyperparameters": hyper, "data": " ".join(data_bits), "stages": stages,
            "tasks": ", ".join(_task_text(t) for t in task_names) if task_names else None}


def _picked(record: Mapping[str, Any], key: str, label: str, kept: str = "", zero: str = "the cheap baseline") -> str:
    """One card phrase for a value picked on validation (:func:`era_hf.training.alignment.pick_by_validation`'s
    record): the value, how it was picked, the margin rule's best and standard error, and the gain over 0."""
    margin = record.get("margin")
    rule = f" (best {key} {_fmt(margin.get('best'))}, standard error {_fmt(margin.get('standard_error'))})" \
        if isinstance(margin, Mapping) else ""
    gain = record.get("gain_over_weight_0")
    sure = f"; validation nDCG@10 {gain['gain']:+.4f} ± {gain['standard_error']:.4f} (one standard error) " \
           f"over {key} 0, {zero}" if isinstance(gain, Mapping) and \
        all(isinstance(gain.get(k), (int, float)) for k in ("gain", "standard_error")) else ""
    return f"{label} {_fmt(record[key])}, picked on {record.get('selected_by', '?')}{rule}{kept}{sure}"


def _task_text(spec: str) -> str:
    """A task spec for the card: Hub ids and built-in names as they are, local directories by name only."""
    spec = str(spec)
    if spec.startswith(("builtin:", "mair:")) or dataset_of_source(spec)[0]:
        return f"`{spec}`"
    return f"`{Path(spec).name}` (local directory)"


# ------------------------------------------------------------------------------------------ the card
def _head_parameters(model_dir: Path) -> int | None:
    try:
        from safetensors import safe_open

        total = 0
        with safe_open(str(model_dir / "model.safetensors"), framework="np") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                total += int(math.prod(f.get_slice(key).get_shape()))
        return total
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the push's own checks
        return None


def _read_config(model_dir: Path) -> dict[str, Any]:
    from .modeling_era import _check_model_dir

    require_directory(model_dir, "model directory")
    _check_model_dir(model_dir)  # an ERA config.json (a JSON object) and a readable head, as a push checks
    config = _read_json(model_dir / "config.json", "model config")
    for key in ("query_encoder", "document_encoder", "query_dim", "document_dim"):
        if key not in config:
            raise ERAError(f"{model_dir / 'config.json'} is damaged: {key!r} is missing")
    return config


def _document_revision(config: Mapping[str, Any]) -> str | None:
    if config.get("document_encoder_revision"):
        return config["document_encoder_revision"]
    try:  # resolved from the local HF cache only (no network)
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(config["document_encoder"], "config.json")
        if isinstance(path, str) and "snapshots" in Path(path).parts:
            parts = Path(path).parts
            return parts[parts.index("snapshots") + 1]
    except Exception:  # noqa: BLE001
        return None
    return None


def build_model_card(model_dir: str | os.PathLike, eval_results: Any = None, *, repo_id: str | None = None,
                     license: str = DEFAULT_LICENSE, language: str | list[str] | None = None,
                     model_name: str | None = None, tags: Sequence[str] = (),
                     datasets: Sequence[str] = ()) -> Any:
    """Render the model card (a ``huggingface_hub.ModelCard``) of an ERA model directory.

    Args:
        model_dir: the saved model (``config.json``, ``model.safetensors``; optionally ``training_log.json``,
            ``loss_curves.png``, ``eval_results.json``).
        eval_results: an evaluation JSON (path or loaded) from ``era-hf evaluate``; default: the
            directory's ``eval_results.json`` when present. Baselines in it must share the model's
            test queries.
        repo_id: the Hub id used in the usage snippets (default: ``YOUR_NAMESPACE/<directory name>``).
        license, language, model_name, tags, datasets: metadata (datasets are added to those found
            in the evaluation / training log).

    Raises:
        ERAError: not an ERA directory, an unreadable / inconsistent evaluation file, an invalid license.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from . import __version__

    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    if license not in _LICENSES:
        raise ERAError(f"unknown license {license!r}; use a Hub license id such as apache-2.0, mit, cc-by-4.0 "
                       "or 'other'")
    weights = model_dir / "model.safetensors"
    head_sha = sha256_file(weights) if weights.is_file() else None
    if eval_results is None and (model_dir / EVAL_FILE).is_file():
        eval_results = model_dir / EVAL_FILE
    training_log = None
    if (model_dir / TRAINING_LOG).is_file():
        training_log = _read_json(model_dir / TRAINING_LOG, "training log")
        if not isinstance(training_log, Mapping):
            raise ERAError(f"{model_dir / TRAINING_LOG} must hold a JSON object")

    name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)
    repo = repo_id or f"YOUR_NAMESPACE/{model_dir.resolve().name}"
    found_datasets: list[str] = list(datasets)
    eval_ctx = None
    eval_results_list = None
    if eval_results is not None:
        runs = load_eval_runs(eval_results)
        cmp = compare_runs(runs, config, model_dir, head_sha)
        eval_ctx = _eval_section(cmp)
        eval_results_list = _eval_results(cmp)
        if not cmp["compared"]:
            warnings.warn("the evaluation results have no baseline: the card cannot show the gain over the "
                          "document encoder alone; evaluate with --baseline doc --baseline query", stacklevel=2)
        for task in cmp["model"]["tasks"].values():
            ds, _ = dataset_of_source(task.get("source"))
            if ds:
                found_datasets.append(ds)
    training_ctx = _training_section(training_log) if training_log is not None else None
    if training_log is not None:
        args = next((training_log[k] for k in ("arguments", "args", "training_arguments", "hyperparameters",
                                               "config") if isinstance(training_log.get(k), Mapping)), training_log)
        for spec in args.get("tasks") or []:
            ds, _ = dataset_of_source(spec if isinstance(spec, str) else (spec or {}).get("source"))
            if ds:
                found_datasets.append(ds)

    base_models = list(dict.fromkeys(m for m in (config["query_encoder"], config["document_encoder"])
                                     if _is_hub_id(m)))
    card_tags = list(dict.fromkeys([*MODEL_TAGS, *(["lora"] if config.get("lora") else []), *tags]))
    card_data = ModelCardData(
        library_name="era_hf",
        pipeline_tag="sentence-similarity",
        license=license,
        language=language,
        base_model=base_models or None,
        base_model_relation="adapter" if base_models else None,
        tags=card_tags,
        datasets=list(dict.fromkeys(found_datasets)) or None,
        model_name=name,
        eval_results=eval_results_list,
    )
    n_params = _head_parameters(model_dir) if weights.is_file() else None
    repo_bytes = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()
                     and (p.parent == model_dir or "query_encoder_lora" in p.parts)
                     and p.suffix in (".json", ".safetensors", ".py", ".png"))
    query_format = config.get("query_format", "none")
    if query_format == "none":
        qf_text = "the query as is (no instruction prefix)"
    elif query_format == "reference":
        qf_text = "`Instruct: {instruction}\\nQuery: {query}` (no prefix when the instruction is empty)"
    else:
        qf_text = f"custom template `{query_format}`"
    if config.get("default_instruction"):
        qf_text += f"; default instruction: “{config['default_instruction']}”"
    training_args = (training_log or {}).get("arguments") or {}
    example_instruction = repr(config.get("default_instruction") or None)
    era = {
        "title": name,
        "repo_id": repo,
        "query_encoder": config["query_encoder"],
        "document_encoder": config["document_encoder"],
        "query_encoder_short": _short(config["query_encoder"]),
        "document_encoder_short": _short(config["document_encoder"]),
        "query_encoder_url": _model_url(config["query_encoder"]),
        "document_encoder_url": _model_url(config["document_encoder"]),
        "query_encoder_revision": config.get("query_encoder_revision"),
        "document_encoder_revision": _document_revision(config),
        "query_dim": config["query_dim"],
        "document_dim": config["document_dim"],
        "query_pooling": config.get("query_pooling", "mean"),
        "document_pooling": config.get("document_pooling", "mean"),
        "query_max_length": config.get("query_max_length", 128),
        "document_max_length": config.get("document_max_length", 256),
        "normalize_documents": config.get("normalize_document_embeddings", True),
        "head_type": config.get("head_type", "linear"),
        "head_kwargs": ", ".join(f"{k}={v}" for k, v in (config.get("head_kwargs") or {}).items()),
        "head_parameters": f"{n_params:,}" if n_params is not None else "?",
        "head_size": _human_size(weights.stat().st_size) if weights.is_file() else "?",
        "repo_size": _human_size(repo_bytes),
        "anchor": bool(config.get("anchor")),
        "lora": bool(config.get("lora")),
        "recipe": config.get("recipe") or (training_args.get("recipe") if isinstance(training_args, Mapping) else None),
        "init": config.get("init"),
        "query_format_text": qf_text,
        "example_query": "how do airplane wings produce lift?",
        "lexical_weight": float(config.get("lexical_weight") or 0.0),
        "example_instruction": example_instruction,
        "eval": eval_ctx,
        "no_eval_note": ("No evaluation results were provided. Evaluate the model and the baselines on the same "
                         "test queries with `era-hf evaluate --task TASK --model MODEL_DIR --baseline doc "
                         "--baseline query --output MODEL_DIR/eval_results.json` and regenerate this card."),
        "training": training_ctx,
        "loss_plot": LOSS_PLOT if (model_dir / LOSS_PLOT).is_file() else None,
        "era_hf_version": __version__,
    }
    try:
        card = ModelCard.from_template(card_data, template_path=str(template_path(MODEL_TEMPLATE)), era=era)
    except ERAError:
        raise
    except Exception as err:  # noqa: BLE001 - jinja2 errors in a customised template
        raise ERAError(f"cannot render the model card template: {type(err).__name__}: {err}") from None
    check_card(card)
    return card


# ------------------------------------------------------------------------------------------ validation
def check_card(card: Any, repo_type: str = "model") -> dict[str, Any]:
    """Local metadata validation (no network): the YAML parses back to the same metadata, the
    required keys are there, ``model-index`` parses with ``model_index_to_eval_results`` and every
    value is a finite number. Returns the metadata dict; raises ERAError naming the problem.

    ``ModelCard.validate()`` additionally asks the Hub (``/api/validate-yaml``); :mod:`era_hf.hub`
    calls it before pushing.
    """
    import yaml
    from huggingface_hub import DatasetCard, ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = str(card)
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.DOTALL)
    if match is None:
        raise ERAError("the card has no YAML metadata block")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise ERAError(f"the card's YAML metadata does not parse: {err}") from None
    if not isinstance(meta, dict):
        raise ERAError("the card's YAML metadata is not a mapping")
    reparsed = (ModelCard if repo_type == "model" else DatasetCard)(text)
    if reparsed.data.to_dict() != card.data.to_dict():
        raise ERAError("the card's metadata does not round-trip through huggingface_hub")
    if meta.get("license") is not None and meta["license"] not in _LICENSES:
        raise ERAError(f"the card's license {meta['license']!r} is not a Hub license id")
    if repo_type == "model":
        for key in ("library_name", "pipeline_tag", "license", "tags"):
            if not meta.get(key):
                raise ERAError(f"the model card metadata lacks {key!r}")
        for base in ([meta["base_model"]] if isinstance(meta.get("base_model"), str) else meta.get("base_model") or []):
            if not _is_hub_id(base):
                raise ERAError(f"base_model {base!r} is not a Hub model id")
        if "model-index" in meta:
            try:
                _, results = model_index_to_eval_results(meta["model-index"])
            except (KeyError, TypeError, ValueError) as err:
                raise ERAError(f"the card's model-index does not parse: {err}") from None
            for r in results:
                _check_value(r.metric_value, f"model-index value of {r.metric_name or r.metric_type} "
                                             f"on {r.dataset_name}")
    return meta


# ------------------------------------------------------------------------------------------ index card
def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def build_index_card(index_dir: str | os.PathLike, *, repo_id: str | None = None, license: str | None = None,
                     pretty_name: str | None = None) -> Any:
    """Render the dataset card (``huggingface_hub.DatasetCard``) of a document index directory."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from . import __version__

    index_dir = Path(index_dir)
    config = _read_json(index_dir / "index_config.json", "index config")
    if not isinstance(config, Mapping) or "num_documents" not in config or "dim" not in config:
        raise ERAError(f"{index_dir / 'index_config.json'} is not an era_hf index config")
    if license is not None and license not in _LICENSES:
        raise ERAError(f"unknown license {license!r}; use a Hub license id such as cc-by-4.0 or 'other'")
    n = int(config["num_documents"])
    repo = repo_id or f"YOUR_NAMESPACE/{index_dir.resolve().name}"
    encoder = config.get("document_encoder") or "unknown"
    data = DatasetCardData(
        license=license,
        pretty_name=pretty_name or f"ERA document index ({_short(encoder)}, {n} documents)",
        size_categories=[_size_category(n)],
        task_categories=["text-retrieval"],
        tags=list(INDEX_TAGS),
        configs=[{"config_name": "documents", "data_files": "documents.jsonl", "default": True}],
    )
    ctx = {
        "repo_id": repo,
        "document_encoder": encoder,
        "document_encoder_url": _model_url(encoder),
        "document_encoder_revision": config.get("document_encoder_revision"),
        "pooling": config.get("pooling"),
        "max_length": config.get("max_length"),
        "normalize": config.get("normalize"),
        "dim": config["dim"],
        "num_documents": n,
        "kind": config.get("kind", "flat"),
        "hnsw": config.get("hnsw"),
        "metric": config.get("metric", "inner_product"),
        "index_version": config.get("era_hf_version"),
        "era_hf_version": __version__,
    }
    try:
        card = DatasetCard.from_template(data, template_path=str(template_path(INDEX_TEMPLATE)), index=ctx)
    except ERAError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ERAError(f"cannot render the index card template: {type(err).__name__}: {err}") from None
    check_card(card, repo_type="dataset")
    return card
