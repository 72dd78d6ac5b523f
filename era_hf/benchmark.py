"""``era-hf benchmark``: every method on every task's fixed TEST split, several label ratios and seeds,
in-domain and leave-one-out, with resumable per-run result files; BENCHMARKS.md from those files.

What runs (``docs/era-method.md``, "Evaluation"):

* zero-shot baselines (deterministic, run once per encoder pair): ``doc`` (document encoder on both
  sides: the cheap index as is) and ``query`` (query encoder on both sides: the corpus re-encoded;
  ``--skip-query-baseline-for TASK`` records such a task as *not measured*);
* trained methods, one :class:`BenchmarkMethod` each in :data:`METHODS` (recipe, mode, option
  overrides), per label ratio and per training seed.

Protocols:

* ``in_domain``: train once on all tasks pooled, test on each task;
* ``per_task``: one head per task, trained on that task alone and tested on it -- how a user deploys
  ERA: one adapter for one fixed document index;
* ``leave_one_out``: for each task T, train on the tasks whose *domain string* differs from T's and
  test on T. Domains are taken as given: in ``../shared/data`` every task has its own domain string
  (cisi "library and information science" and adi "library and information science (documentation)"
  differ), so there it is effectively leave-one-collection-out. It runs at one ratio
  (``--loo-ratio``, 0.2) to bound the cost.

Seeds: ``--seeds N`` = training seeds 0..N-1 (python, numpy, torch); the SPLIT seed is always
:data:`SPLIT_SEED` (42), so every method and seed is scored on the same test queries; each result file
stores its split. Methods without labels (``alignment_only``) do not depend on the ratio: one run per
seed, shown at every ratio.

Layout of ``--out`` (one JSON per run, written atomically, with per-query values)::

    <out>/<pair>/baselines/<doc|query>.json
    <out>/<pair>/in_domain/<method>/r<ratio>/seed<k>.json          (r<ratio> = "no_labels" for alignment_only)
    <out>/<pair>/per_task/<method>/r<ratio>/<task>/seed<k>.json
    <out>/<pair>/leave_one_out/<method>/r<ratio>/<held-out task>/seed<k>.json

``<pair>`` is ``<query encoder>__<document encoder>`` (last path components). Each file records
``config_hash`` = SHA-256 of the run's configuration (method, every result-affecting training
argument, encoders and resolved revisions, tasks with content revisions and split ids, seed); a
re-run reuses a file whose hash matches, so re-running the command continues an interrupted
benchmark and a changed configuration is recomputed.

Example (the full run; the MiniLM -> MiniLM pure query-side adaptation row with
``--also-same-encoder``)::

    era-hf benchmark --suite ../shared/data --query-encoder sentence-transformers/all-mpnet-base-v2 \\
        --document-encoder sentence-transformers/all-MiniLM-L6-v2 --label-ratios 0.05 0.1 0.2 0.4 \\
        --seeds 3 --out results/ --also-same-encoder --skip-query-baseline-for vaswani --report BENCHMARKS.md
    era-hf benchmark --report-only --out results/ --report BENCHMARKS.md

Python::

    >>> from era_hf.benchmark import BenchmarkConfig, run_benchmark  # doctest: +SKIP
    >>> summary = run_benchmark(BenchmarkConfig(suite=["../shared/data/adi"], out="results"))  # doctest: +SKIP
    >>> summary["trained"], summary["reused"]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import ERAError
from .evaluation import BASELINE_DESCRIPTIONS, BASELINES
from .rerank import Rerank, RerankCalibration

FORMAT = "era_hf.benchmark/1"
SPLIT_SEED = 42
PROTOCOLS = ("in_domain", "per_task", "leave_one_out")
PROTOCOL_TITLES = {"in_domain": "In-domain", "per_task": "Per task", "leave_one_out": "Leave-one-out"}
BASELINE_METHODS = BASELINES
DEFAULT_RATIOS = (0.05, 0.1, 0.2, 0.4)
NO_LABELS_DIR = "no_labels"
#: Weight of the anchor-penalty row (sum of squared deviations from the stage-1 weights). A benchmark
#: choice, not the paper's (the reference has no such term).
ANCHOR_PENALTY_WEIGHT = 1.0
#: ``--quick``: tiny epoch counts for smoke tests; the report flags such runs.
QUICK_OVERRIDES = {"alignment.epochs": 2, "adaptation.epochs": 3}
#: Run-level fields a ``--set`` may not change: the benchmark itself sets them per run (or they fix the
#: encoder pair, which has its own flags).
RESERVED = {"tasks", "output_dir", "query_encoder", "document_encoder", "query_encoder_revision",
             "document_encoder_revision", "query_pooling", "document_pooling", "query_format",
             "document_query_format", "query_max_length", "document_max_length", "mode", "label_ratio", "seed",
             "split_seed", "recipe", "resume", "overwrite", "stop_after", "cache_dir"}


@dataclass(frozen=True)
class BenchmarkMethod:
    """One trained row of the benchmark: a recipe, a mode and option overrides (dotted field names)."""

    name: str
    recipe: str
    mode: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: stage 1 aligns on the test tasks' documents (``alignment_tasks``): differs from training on them only
    #: in ``leave_one_out``, so it runs there alone
    align_on_test: bool = False
    #: evaluation re-ranks each query's first candidates with the query encoder (:class:`~era_hf.rerank.Rerank`, or
    #: its weight picked per task on validation queries: :class:`~era_hf.rerank.RerankCalibration`)
    rerank: Rerank | RerankCalibration | None = None

    @property
    def uses_labels(self) -> bool:
        return self.mode != "alignment_only"


#: The options that turn the recommended recipe's distilled stage 1 back into the score map whose weight is picked
#: on labels, with stage 2's earlier patience: recipe `recommended` as it was until 2026-11-26 (the rows built on
#: it keep their stored results).
NO_DISTILL = {"alignment.distill_steps": 0, "adaptation.early_stopping_patience": 5}

#: The recommended recipe's teacher until 2026-11-27 had no BM25 term: the options measured on top of it keep it
#: off, and so their stored results (a weight of 0 leaves the hash as before the field existed).
NO_LEXICAL = {"alignment.distill_lexical_weight": 0.0}

#: The recommended recipe searches in hybrid since 2026-11-27 (lexical_margin_se 'auto': with alignment_tasks since
#: the nineteenth session, everywhere labels are read since the twentieth); the rows measured on top of it before
#: keep dense search, and so their stored results.
DENSE = {"adaptation.lexical_margin_se": None}

#: The trained methods, in report order. A new row is one new entry.
METHODS: tuple[BenchmarkMethod, ...] = (
    BenchmarkMethod("alignment_only", "reference", "alignment_only", {},
                    "reference recipe, stage 1 only (no labels: one run per seed, the same at every ratio)"),
    BenchmarkMethod("label_only", "reference", "label_only", {},
                    "reference recipe, stage 2 only from PyTorch's default random init: the paper's "
                    "Embedding Adapter baseline, as the authors run it"),
    BenchmarkMethod("label_only_fair", "recommended", "label_only", DENSE,
                    "OURS: recipe `recommended` in mode label_only: the same head, stage-2 loss, negatives, "
                    "optimiser, schedule and early stopping as rec+dense, but starting from the head's "
                    "fresh init (random for a plain head, the zero map = the cheap baseline for an anchored "
                    "one) instead of a stage-1 fit; a stage-1 negative teacher becomes 'auto' (the document "
                    "encoder) and an anchor penalty 0, since both need stage-1 weights"),
    BenchmarkMethod("era_reference", "reference", "both", {},
                    "ERA as in the paper: reference recipe, stage 1 then stage 2"),
    BenchmarkMethod("era_ridge_init", "ridge_init", "both", {},
                    "OURS: recipe ridge_init: closed-form ridge stage 1, reference stage 2"),
    BenchmarkMethod("era_recommended", "recommended", "both", {},
                    "OURS: recipe `recommended` (era_hf's default), stage 1 (score map refined by listwise "
                    "distillation of the fused scores and BM25, no labels) then stage 2, searching in hybrid: BM25 "
                    "of the query text fused with the adapted query's cosines (z-scored per query), BM25's weight "
                    "the best of adaptation.lexical_weights on the labelled validation queries "
                    "(adaptation.lexical_margin_se 'auto' -> 0); needs the documents' texts at search time "
                    "(DocumentIndex keeps them), not a second embedding index"),
    BenchmarkMethod("rec+rerank", "recommended", "both", {},
                    "OURS: era_recommended, its top 50 candidates per query re-ranked with the query encoder on both "
                    "sides (z-scored first-stage score + 1 x z-scored strong cosine; era_hf.rerank): 50 "
                    "strong-encoder passes per query over the candidates' texts, the cheap index untouched",
                    rerank=Rerank()),
    BenchmarkMethod("rec+rerank_val", "recommended", "both", {},
                    "OURS: rec+rerank with the re-ranking weight picked per collection (era_hf.rerank."
                    "RerankCalibration): of 0.25, 0.5, 1, 2, 4, 8 and inf (the query encoder's own order of the "
                    "candidates), the best mean nDCG@10 on the collection's validation queries (3 to 22 here)",
                    rerank=RerankCalibration()),
    BenchmarkMethod("rec+dense", "recommended", "both", DENSE,
                    "OURS: era_recommended as it was until 2026-11-27 (twentieth session): dense search only "
                    "(adaptation.lexical_margin_se=None); the rec+ rows below are measured on top of it"),
    BenchmarkMethod("rec_no_lexical+hybrid", "recommended", "both",
                    {**NO_LEXICAL, "adaptation.lexical_margin_se": 0.0},
                    "OURS: era_recommended whose stage-1 teacher has no BM25 term "
                    "(alignment.distill_lexical_weight=0), so BM25 enters at search time only"),
    BenchmarkMethod("era_recommended_index", "recommended", "both", {},
                    "OURS: era_recommended with stage 1 on the held-out collection, the index that is searched "
                    "(`--alignment-tasks`): the distillation ranks its documents and unlabelled non-test queries (no "
                    "labels), stage 2 reads the other collections' labels, and the model searches in hybrid with "
                    "BM25, its weight picked on the other collections' validation queries (lexical_margin_se "
                    "'auto' -> 0); leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("rec_index+dense", "recommended", "both", DENSE,
                    "OURS: era_recommended_index as it was until 2026-11-27 (nineteenth session): dense search "
                    "(adaptation.lexical_margin_se=None); leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("rec_no_distill", "recommended", "both", {**NO_DISTILL, **DENSE},
                    "OURS: recipe `recommended` as it was until 2026-11-26: stage 1's score map mixed in with a "
                    "weight picked on the nDCG@10 of the labelled non-test queries instead of distilled, stage 2's "
                    "early-stopping patience 5"),
    BenchmarkMethod("rec_no_lexical", "recommended", "both", {**NO_LEXICAL, **DENSE},
                    "OURS: recipe `recommended` as it was on 2026-11-27 before the BM25 term: stage 1's teacher is the "
                    "two encoders' fused scores alone (alignment.distill_lexical_weight=0)"),
    BenchmarkMethod("rec+teacher_w2", "recommended", "both",
                    {**DENSE, "alignment.distill_teacher_weight": 2.0, "alignment.distill_lexical_weight": 2.0},
                    "OURS: rec+dense whose stage-1 teacher weighs the strong encoder 2 and BM25 2 "
                    "(alignment.distill_teacher_weight=2, distill_lexical_weight=2): the best of the weights tried "
                    "by benchmarks/stage1_selection.py, not adopted (lower on the test queries in 7 of 8 cells, in "
                    "leave-one-out and on the demo's task; docs/quality.md)"),
    BenchmarkMethod("rec+distill_lr1e-3", "recommended", "both", {**NO_LEXICAL, **DENSE, "alignment.distill_lr": 1e-3},
                    "OURS: recipe `recommended` as it was until 2026-11-27: stage 1's distillation takes Adam steps "
                    "of 1e-3 (alignment.distill_lr, the first value tried) instead of 3e-4, without the BM25 term"),
    BenchmarkMethod("rec+patience5", "recommended", "both",
                    {**NO_LEXICAL, **DENSE, "adaptation.early_stopping_patience": 5},
                    "OURS: rec_no_lexical with stage 2's early-stopping patience 5 (the distilled start is harder "
                    "to beat: with 5, stage 2 of one seed stopped before any epoch beat it on validation)"),
    BenchmarkMethod("rec+distill_weight", "recommended", "both",
                    {**NO_LEXICAL, **DENSE, "adaptation.distill_weight": 1.0},
                    "OURS: rec_no_lexical whose stage 2 also minimises stage 1's listwise distillation loss "
                    "(adaptation.distill_weight=1: one batch of documents and unlabelled non-test queries per "
                    "step), so the labels correct the distilled head without unlearning the fused ranking"),
    BenchmarkMethod("rec+mlp_head", "recommended", "both", {**NO_LEXICAL, **DENSE, "head": "mlp"},
                    "OURS: rec_no_lexical with the residual two-layer head (head=mlp: linear + GELU branch, hidden "
                    "2 × document dim, the branch starting at zero): stage 1 writes the score map into its linear "
                    "part, then the distillation and stage 2 train both"),
    BenchmarkMethod("rec+shrink", "recommended", "both", {**DENSE, "adaptation.shrink_margin_se": 1.0},
                    "OURS: rec+dense whose trained correction is then scaled toward the cheap baseline: the "
                    "smallest scale of adaptation.shrink_scales within one standard error of the best on the "
                    "labelled validation queries (adaptation.shrink_margin_se=1)"),
    BenchmarkMethod("distill_only", "recommended", "alignment_only", {},
                    "OURS, no labels: recipe `recommended`, stage 1 only: the score map refined by listwise "
                    "distillation of the two encoders' fused scores and BM25 (documents and unlabelled non-test "
                    "queries as queries); one run per seed, the same at every ratio"),
    BenchmarkMethod("rec+clarity_guard", "recommended", "both",
                    {**NO_DISTILL, **DENSE, "alignment.score_weight_guard": "clarity"},
                    "OURS: rec_no_distill whose score-map weight may only be one under which the searched "
                    "collection's unlabelled non-test queries stand out of its corpus at least as clearly as with "
                    "the cheap encoder (alignment.score_weight_guard=clarity)"),
    BenchmarkMethod("rec+one_se", "recommended", "both",
                    {**NO_DISTILL, **DENSE, "alignment.score_weight_margin_se": 1.0},
                    "OURS: rec_no_distill whose score-map weight is the smallest within one standard error of the "
                    "best on the labelled non-test queries (alignment.score_weight_margin_se=1: the cheap baseline "
                    "stays unless the labels show the gain beyond their noise)"),
    BenchmarkMethod("rec_index+clarity_guard", "recommended", "both", {**DENSE, "alignment.distill_steps": 0},
                    "OURS: rec_index+dense as it was until 2026-11-27 (seventeenth session): stage 1 on the held-out collection "
                    "picks the score map's weight instead of distilling (alignment.distill_steps=0), among the "
                    "weights under which that collection's unlabelled non-test queries stand out of its corpus at "
                    "least as clearly as with the cheap encoder (score_weight_guard auto -> clarity); "
                    "leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("rec_index+distill", "recommended", "both", {**NO_LEXICAL, **DENSE},
                    "OURS: rec_index+dense without the BM25 term (alignment.distill_lexical_weight=0); "
                    "leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("rec_index+shrink", "recommended", "both", {**DENSE, "adaptation.shrink_margin_se": 1.0},
                    "OURS: rec_index+dense whose trained correction is then shrunk toward the cheap "
                    "baseline as in rec+shrink (adaptation.shrink_margin_se=1, on the other collections' "
                    "validation queries); leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("rec_index+no_guard", "recommended", "both",
                    {**NO_DISTILL, **DENSE, "alignment.score_weight_guard": "none"},
                    "OURS: rec_no_distill with stage 1 on the held-out collection and without the clarity guard: "
                    "the score-map weight is picked on the other collections' labels alone; leave-one-out only",
                    align_on_test=True),
    BenchmarkMethod("ref+in_batch_negatives", "reference", "both", {"adaptation.in_batch_negatives": True},
                    "era_reference + in-batch negatives (other positives of the batch, same task, never judged)"),
    BenchmarkMethod("ref+all_positives", "reference", "both", {"adaptation.all_positives": True},
                    "era_reference + one training pair per judged positive"),
    BenchmarkMethod("ref+resample_negatives", "reference", "both", {"adaptation.resample_negatives": True},
                    "era_reference + new negatives every epoch"),
    BenchmarkMethod("ref+early_stopping_ndcg10", "reference", "both",
                    {"adaptation.early_stopping_metric": "ndcg@10"},
                    "era_reference + early stopping on validation nDCG@10 instead of the validation loss"),
    BenchmarkMethod("ref+anchor_penalty", "reference", "both", {"adaptation.anchor_penalty": ANCHOR_PENALTY_WEIGHT},
                    f"era_reference + L2 penalty (weight {ANCHOR_PENALTY_WEIGHT:g}) toward the stage-1 weights"),
)
METHOD_NAMES: tuple[str, ...] = BASELINE_METHODS + tuple(m.name for m in METHODS)


def get_method(name: str) -> BenchmarkMethod:
    for m in METHODS:
        if m.name == name:
            return m
    raise ERAError(f"unknown benchmark method {name!r}; known: {', '.join(METHOD_NAMES)}")


def method_description(name: str) -> str:
    return f"zero-shot: {BASELINE_DESCRIPTIONS[name]}" if name in BASELINE_METHODS else get_method(name).description


# ---------------------------------------------------------------------- configuration
@dataclass
class BenchmarkConfig:
    """Everything ``era-hf benchmark`` takes (the CLI builds one of these)."""

    suite: list[str] = field(default_factory=list)
    out: str = "results"
    query_encoder: str = "sentence-transformers/all-mpnet-base-v2"
    document_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    query_encoder_revision: str | None = None
    document_encoder_revision: str | None = None
    label_ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] | None = None  # None = all
    loo_methods: list[str] | None = None  # None = the same as methods
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    loo_ratio: float = 0.2
    skip_query_baseline_for: list[str] = field(default_factory=list)
    also_same_encoder: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted training field -> value, all trained runs
    quick: bool = False
    cache_dir: str | None = None
    batch_size: int = 32
    device: str | None = None
    cpu: bool = False
    force: bool = False
    keep_models: bool = False
    verbose: bool = False
    dry_run: bool = False
    report: str | None = None
    plots_dir: str | None = None
    command: str | None = None

    def global_overrides(self) -> dict[str, Any]:
        return {**(QUICK_OVERRIDES if self.quick else {}), **self.overrides}

    def validate(self) -> None:
        if not self.suite:
            raise ERAError("--suite is required (a directory of task directories, task directories or hub ids)")
        for r in list(self.label_ratios) + [self.loo_ratio]:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1:
                raise ERAError(f"label ratios must be in (0, 1), got {r!r}")
        if not self.label_ratios and "in_domain" in self.protocols:
            raise ERAError("--label-ratios needs at least one ratio")
        if not self.seeds:
            raise ERAError("no seeds (--seeds N with N >= 1, or --seed-list)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ERAError(f"duplicate seeds in {self.seeds}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ERAError(f"unknown protocol(s) {bad}; known: {', '.join(PROTOCOLS)}")
        for name in (self.methods or []) + (self.loo_methods or []):
            if name not in METHOD_NAMES:
                raise ERAError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
        for key in self.global_overrides():
            _, dot, _ = key.partition(".")
            if not dot and key in RESERVED:
                raise ERAError(f"--set {key}=... is not allowed: the benchmark sets {key} itself "
                               "(encoder settings have their own flags)")


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["adaptation.epochs=3", "head=mlp"]`` -> ``{"adaptation.epochs": 3, "head": "mlp"}`` (values as JSON,
    else strings; ``none``/``null`` = None, except for a plain ``str`` field, where ``none`` is a value such as
    ``alignment.score_weight_guard=none`` or ``query_format=none``)."""
    from dataclasses import fields

    from .training.arguments import AdaptationArguments, AlignmentArguments, TrainingArguments

    types = {f.name: f.type for f in fields(TrainingArguments)}  # annotations are strings (postponed)
    known = set(types) - {"alignment", "adaptation"}
    phases = {"alignment": {f.name for f in fields(AlignmentArguments)},
              "adaptation": {f.name for f in fields(AdaptationArguments)}}
    types |= {f"{p}.{f.name}": f.type for p, cls in (("alignment", AlignmentArguments),
                                                      ("adaptation", AdaptationArguments)) for f in fields(cls)}
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise ERAError(f"--set expects KEY=VALUE (e.g. adaptation.epochs=3), got {item!r}")
        phase, dot, name = key.partition(".")
        if dot:
            if phase not in phases or name not in phases[phase]:
                raise ERAError(f"--set {key}: unknown field; {phase}.* fields: "
                               f"{', '.join(sorted(phases.get(phase, phases['adaptation'])))}")
        elif key not in known:
            raise ERAError(f"--set {key}: unknown training field; known: {', '.join(sorted(known))}, and the "
                           "per-phase fields alignment.* and adaptation.* (era-hf train --help lists them all)")
        text = text.strip()
        if text.lower() in ("none", "null"):
            value: Any = "none" if types[key] == "str" else None
        else:
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        out[key] = value
    return out


# ---------------------------------------------------------------------- helpers
def _slug(model_id: str) -> str:
    last = str(model_id).rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", last)


def pair_slug(query_encoder: str, document_encoder: str) -> str:
    return f"{_slug(query_encoder)}__{_slug(document_encoder)}"


def ratio_dir(ratio: float | None) -> str:
    return NO_LABELS_DIR if ratio is None else f"r{ratio:g}"


def result_path(out: str | os.PathLike, pair: str, protocol: str, method: str, ratio: float | None, seed: int,
                heldout: str | None = None) -> Path:
    base = Path(out) / pair / protocol / method / ratio_dir(ratio)
    if heldout is not None:
        base = base / re.sub(r"[^A-Za-z0-9._-]+", "_", heldout)
    return base / f"seed{seed}.json"


def baseline_path(out: str | os.PathLike, pair: str, name: str) -> Path:
    return Path(out) / pair / "baselines" / f"{name}.json"


def config_hash(record: Mapping[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def _task_record(task: Any, ratio: float | None, with_train: bool) -> dict[str, Any]:
    split = task.split(ratio if ratio is not None else 0.2, SPLIT_SEED)
    rec = {"name": task.name, "domain": task.domain, "revision": task.revision, "test": _ids_digest(split.test)}
    if with_train:
        rec["val"] = _ids_digest(split.val)
        if ratio is not None:
            rec["train"] = _ids_digest(split.train)
    return rec


ENVIRONMENT_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "numpy", "faiss-cpu", "scipy",
                        "matplotlib", "safetensors", "tokenizers")


def environment(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """Package versions and the machine (recorded in every result file; the speed benchmarks add theirs)."""
    import platform
    from importlib import metadata

    from . import __version__

    versions: dict[str, str | None] = {"era_hf": __version__}
    for pkg in dict.fromkeys((*ENVIRONMENT_PACKAGES, *extra_packages)):
        if pkg in versions:
            continue
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    if versions.get("faiss-cpu") is None:  # e.g. a conda faiss: no pip metadata
        try:
            import faiss

            versions["faiss-cpu"] = getattr(faiss, "__version__", None)
        except ImportError:
            pass
    env: dict[str, Any] = {"packages": versions, "python": platform.python_version(),
                           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        env["cpus_available"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        env["cpus_available"] = os.cpu_count()
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - torch is a dependency
        pass
    return env


def _make_pair(query_encoder: str, document_encoder: str, cfg: BenchmarkConfig, cache: Any,
               query_revision: str | None, document_revision: str | None) -> Any:
    from .cache import texts_sha256
    from .modeling_era import default_query_format
    from .task_embeddings import EncoderPair

    class _MemoPair(EncoderPair):
        """An EncoderPair that keeps each (memory-mapped) array it returned: a task's embeddings are read
        (and checksummed) once per benchmark process, however many runs use them."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._memo: dict[tuple, Any] = {}

        def _get(self, side: str, texts: Sequence[str], max_length: int | None, fn: Callable[[], Any]) -> Any:
            texts = list(texts)
            key = (side, max_length, len(texts), texts_sha256(texts))
            if key not in self._memo:
                self._memo[key] = fn()
            return self._memo[key]

        def embed_query_side(self, texts: Sequence[str], max_length: int | None = None) -> Any:
            return self._get("query", texts, max_length, lambda: super(_MemoPair, self).embed_query_side(
                texts, max_length))

        def embed_document_side(self, texts: Sequence[str]) -> Any:
            return self._get("document", texts, None, lambda: super(_MemoPair, self).embed_document_side(texts))

    return _MemoPair(query_encoder, document_encoder,
                     query_encoder_revision=query_revision, document_encoder_revision=document_revision,
                     document_query_format=default_query_format(document_encoder), cache=cache,
                     batch_size=cfg.batch_size, device=cfg.device, show_progress_bar=None if cfg.verbose else False)


def training_arguments(method: BenchmarkMethod, *, pair: Any, ratio: float | None, seed: int,
                       overrides: Mapping[str, Any], output_dir: str, cpu: bool = False, quiet: bool = True,
                       split_seed: int = SPLIT_SEED) -> Any:
    """The :class:`~era_hf.training.TrainingArguments` of one run: recipe <- method overrides <- ``overrides``
    (``--set`` / ``--quick``); raises ERAError when the recipe does not exist. ``split_seed`` is the benchmark's
    (:data:`SPLIT_SEED`) except in ``benchmarks/split_sensitivity.py``, which measures other splits."""
    from .training.recipes import get_recipe

    recipe = get_recipe(method.recipe)
    phases: dict[str, dict[str, Any]] = {"alignment": {}, "adaptation": {}}
    run: dict[str, Any] = {}
    for key, value in {**dict(method.overrides), **dict(overrides)}.items():
        phase, dot, name = key.partition(".")
        if dot:
            phases[phase][name] = tuple(value) if name == "ridge_grid" and isinstance(value, list) else value
        else:
            run[key] = value
    # checkpoint frequency is result-neutral: a benchmark run is one short process, its result file is the unit
    phases["alignment"].setdefault("checkpoint_every", 10 ** 9)
    phases["adaptation"].setdefault("checkpoint_every", 10 ** 9)
    q, d = pair.describe()["query_encoder"], pair.describe()["document_encoder"]
    args = recipe.arguments(
        alignment=phases["alignment"], adaptation=phases["adaptation"],
        **{**run, "mode": method.mode, "label_ratio": ratio if ratio is not None else 0.2, "seed": seed,
           "split_seed": split_seed, "query_encoder": pair.query_encoder_id,
           "document_encoder": pair.document_encoder_id, "query_encoder_revision": q["requested_revision"],
           "document_encoder_revision": d["requested_revision"], "output_dir": output_dir, "plot": False,
           "quiet": quiet, "cpu": cpu})
    if method.mode == "label_only":  # stage-1 weights do not exist in label_only
        if args.adaptation.teacher == "stage1":
            args.adaptation.teacher = "auto"
        if args.adaptation.anchor_penalty:
            args.adaptation.anchor_penalty = 0.0
    args.validate()
    return args


#: Result-affecting fields added after results were stored -> the value that behaves as before they existed
#: (the guard as it resolves in the run: 'none' where it does nothing).
_LATER_FIELDS: dict[str, Any] = {"alignment.score_weight_guard": "none", "alignment.score_weight_margin_se": 0.0,
                                  "adaptation.distill_weight": 0.0, "alignment.distill_lexical_weight": 0.0,
                                  "unlabelled_queries": [], "alignment.distill_judged_queries": True}


def _hash_arguments(args: Any, with_ratio: bool, has_alignment_tasks: bool = False) -> dict[str, Any]:
    from .training.arguments import distills, resolved_lexical_margin_se, resolved_score_weight_guard

    flat = args.flat(include_neutral=False)
    flat["alignment.score_weight_guard"] = resolved_score_weight_guard(args, has_alignment_tasks)  # what it does
    for key, earlier in _LATER_FIELDS.items():  # results from before the field existed keep their hash
        if flat.get(key) == earlier:
            flat.pop(key)
    if args.adaptation.shrink_margin_se is None or args.mode == "alignment_only":  # not shrinking: they do nothing
        for key in ("adaptation.shrink_margin_se", "adaptation.shrink_scales"):
            flat.pop(key, None)
    lexical_margin = resolved_lexical_margin_se(args)  # what it does ('auto' resolved)
    flat["adaptation.lexical_margin_se"] = lexical_margin
    if lexical_margin is None:  # dense search: the hybrid weights are never tried
        for key in ("adaptation.lexical_margin_se", "adaptation.lexical_weights"):
            flat.pop(key, None)
    stage1_distills = distills(args) and args.mode != "label_only"
    if not stage1_distills and not args.adaptation.distill_weight:  # no distillation: its settings do nothing
        for key in [k for k in flat if k.startswith("alignment.distill_")]:
            flat.pop(key)
    for key in ("tasks", "alignment_tasks", "output_dir", "recipe"):  # the record names the tasks themselves
        flat.pop(key, None)
    if not with_ratio:
        flat.pop("label_ratio", None)
    return flat


def result_problem(data: Any) -> str | None:
    """What makes a decoded result file unusable (None when it is whole): the report and a resumed run read
    ``pair`` and ``evaluation`` with numeric metrics per task."""
    if not isinstance(data, dict):
        return f"not a JSON object but a {type(data).__name__}"
    ev = data.get("evaluation")
    if isinstance(data.get("pair"), str) and ev is None and data.get("not_measured"):
        return None  # a baseline skipped on every task (--skip-query-baseline-for)
    if not isinstance(data.get("pair"), str) or not isinstance(ev, dict) or not isinstance(ev.get("tasks"), dict) \
            or not isinstance(ev.get("macro"), dict):
        return "no encoder pair or evaluation"
    for task, record in ev["tasks"].items():
        metrics = record.get("metrics") if isinstance(record, dict) else None
        if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in metrics.values()):
            return f"task {task!r} has no numeric metrics"
    return None


def _load_current(path: Path, digest: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log(f"warning: {path} is unreadable ({err}); recomputing it")
        return None
    if not isinstance(data, dict):
        log(f"warning: {path} is not a result file ({result_problem(data)}); recomputing it")
        return None
    if data.get("format") == FORMAT and data.get("config_hash") == digest:
        problem = result_problem(data)
        if problem:
            log(f"warning: {path} is damaged ({problem}); recomputing it")
            return None
        return data
    log(f"note: {path} holds another configuration; recomputing it")
    return None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


# ---------------------------------------------------------------------- the run
class _Runner:
    def __init__(self, cfg: BenchmarkConfig, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.log = log
        self.out = Path(cfg.out)
        self.counts = {"trained": 0, "reused": 0, "baselines_evaluated": 0, "baselines_reused": 0, "planned": 0}
        self.skipped_methods: dict[str, str] = {}
        self.accelerator: Any = None
        self.env: dict[str, Any] | None = None
        self.command = cfg.command or " ".join(shlex.quote(a) for a in ["era-hf", *sys.argv[1:]])

    # ------------------------------------------------------------------ methods
    def trained_methods(self) -> list[BenchmarkMethod]:
        from .training.recipes import get_recipe

        wanted = self.cfg.methods or list(METHOD_NAMES)
        out = []
        for name in wanted:
            if name in BASELINE_METHODS:
                continue
            m = get_method(name)
            try:
                get_recipe(m.recipe)
            except ERAError as err:
                self.skipped_methods[m.name] = str(err)
                self.log(f"skipping method {m.name}: {err}")
                continue
            out.append(m)
        return out

    def _environment(self) -> dict[str, Any]:
        if self.env is None:
            self.env = environment()
        return self.env

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        from .atomic import atomic_write_json

        atomic_write_json(path, payload)

    # ------------------------------------------------------------------ baselines
    def baseline(self, name: str, pair: Any, slug: str, tasks: list[Any]) -> None:
        from .evaluation import Baseline, evaluate_suite

        # with one model on both sides the query baseline re-encodes nothing new (a cache hit): never skipped
        same = pair.query_encoder_id == pair.document_encoder_id
        skip = set(self.cfg.skip_query_baseline_for) \
            if Baseline(name).encodes_corpus_with_query_encoder and not same else set()
        measured = [t for t in tasks if t.name not in skip]
        not_measured = [t.name for t in tasks if t.name in skip]
        record = {"format": FORMAT, "kind": "baseline", "method": name, "encoders": pair.describe(),
                  "tasks": [_task_record(t, None, False) for t in measured], "not_measured": not_measured,
                  "split_seed": SPLIT_SEED}
        digest = config_hash(record)
        path = baseline_path(self.out, slug, name)
        self.counts["planned"] += 1
        if self.cfg.dry_run:
            self.log(f"[dry run] baseline {name} ({slug}): {'exists' if _load_current(path, digest, lambda s: None) else 'to run'}")
            return
        if not self.cfg.force and _load_current(path, digest, self.log) is not None:
            self.counts["baselines_reused"] += 1
            self.log(f"baseline {name} | {slug}: reused {path}")
            return
        t0 = time.perf_counter()
        evaluation = None
        if measured:
            evaluation = evaluate_suite(Baseline(name), measured, pair, label_ratio=0.2, seed=SPLIT_SEED)
        seconds = time.perf_counter() - t0
        payload = {"format": FORMAT, "kind": "baseline", "config_hash": digest, "config": record,
                   "pair": slug, "protocol": None, "method": {"name": name, "type": "baseline", "mode": None,
                                                              "recipe": None, "description": method_description(name)},
                   "label_ratio": None, "seed": None, "split_seed": SPLIT_SEED, "heldout": None,
                   "train_tasks": [], "test_tasks": [t.name for t in measured], "not_measured": not_measured,
                   "task_domains": {t.name: t.domain for t in tasks},
                   "evaluation": evaluation, "training": None, "global_overrides": {},
                   "seconds": {"total": round(seconds, 3)}, "command": self.command,
                   "environment": self._environment(),
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write(path, payload)
        self.counts["baselines_evaluated"] += 1
        macro = evaluation["macro"].get("ndcg@10") if evaluation else None
        note = f" (not measured: {', '.join(not_measured)})" if not_measured else ""
        self.log(f"baseline {name} | {slug}: macro nDCG@10 {_fmt(macro)}{note} | {seconds:.1f} s")

    # ------------------------------------------------------------------ trained runs
    def trained(self, method: BenchmarkMethod, protocol: str, ratio: float | None, seed: int, pair: Any, slug: str,
                train_tasks: list[Any], test_tasks: list[Any], heldout: str | None) -> None:
        from .evaluation import ERAMethod, evaluate_suite
        from .training import ERATrainer
        from .training.trainer import make_accelerator

        cfg = self.cfg
        path = result_path(self.out, slug, protocol, method.name, ratio, seed, heldout)
        overrides = cfg.global_overrides()
        args = training_arguments(method, pair=pair, ratio=ratio, seed=seed, overrides=overrides,
                                  output_dir=str(path.parent), cpu=cfg.cpu, quiet=not cfg.verbose)
        record = {"format": FORMAT, "kind": "trained", "protocol": protocol, "method": method.name,
                  "recipe": method.recipe, "mode": method.mode,
                  "arguments": _hash_arguments(args, ratio is not None, method.align_on_test),
                  "encoders": pair.describe(),
                  "train_tasks": [_task_record(t, ratio, True) for t in train_tasks],
                  "test_tasks": [_task_record(t, ratio, False) for t in test_tasks],
                  "heldout": heldout, "seed": seed, "split_seed": SPLIT_SEED}
        if method.rerank is not None:  # an evaluation setting: only rows that re-rank record it (other hashes stay)
            record["rerank"] = method.rerank.to_dict()
        alignment_tasks = list(test_tasks) if method.align_on_test else []
        if alignment_tasks:
            record["alignment_tasks"] = [_task_record(t, None, False) for t in alignment_tasks]
        digest = config_hash(record)
        label = (f"{protocol} | {slug} | {method.name} | r={ratio if ratio is not None else 'none'} | seed {seed}"
                 + (f" | {'task' if protocol == 'per_task' else 'held out'} {heldout}" if heldout else ""))
        self.counts["planned"] += 1
        if cfg.dry_run:
            self.log(f"[dry run] {label}: {'exists' if _load_current(path, digest, lambda s: None) else 'to run'}")
            return
        if not cfg.force:
            existing = _load_current(path, digest, self.log)
            if existing is not None:
                self.counts["reused"] += 1
                macro = existing["evaluation"]["macro"].get("ndcg@10")
                self.log(f"{label}: macro nDCG@10 {_fmt(macro)} | reused")
                return
        if self.accelerator is None:
            self.accelerator = make_accelerator(cfg.cpu)
        work_root = self.out / ".work"
        work_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{method.name}-seed{seed}-", dir=work_root))
        args.output_dir = str(workdir)
        t0 = time.perf_counter()
        try:
            trainer = ERATrainer(pair, train_tasks, args, accelerator=self.accelerator, alignment_tasks=alignment_tasks)
            model = trainer.train()
            train_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            evaluation = evaluate_suite(ERAMethod(model, rerank=method.rerank), test_tasks, pair,
                                        label_ratio=ratio if ratio is not None else 0.2, seed=SPLIT_SEED)
            eval_seconds = time.perf_counter() - t1
            log = trainer.log
            training = {
                "init": log.get("init"), "recipe_overrides": log.get("recipe_overrides"),
                "stages": {name: {k: v for k, v in (info or {}).items() if k != "history"}
                           for name, info in (log.get("stages") or {}).items()},
                "timings": log.get("timings"), "embedding_cache": log.get("embedding_cache"),
                "tasks": [{k: t.get(k) for k in ("name", "domain", "revision", "n_documents", "split")}
                          for t in log.get("tasks", [])],
            }
            payload = {"format": FORMAT, "kind": "trained", "config_hash": digest, "config": record, "pair": slug,
                       "protocol": protocol,
                       "method": {"name": method.name, "type": "trained", "recipe": method.recipe,
                                  "mode": method.mode, "overrides": dict(method.overrides),
                                  "description": method.description},
                       "label_ratio": ratio, "seed": seed, "split_seed": SPLIT_SEED, "heldout": heldout,
                       "train_tasks": [t.name for t in train_tasks], "test_tasks": [t.name for t in test_tasks],
                       "alignment_tasks": [t.name for t in alignment_tasks],
                       "task_domains": {t.name: t.domain for t in test_tasks},
                       "arguments": args.to_dict(), "global_overrides": overrides, "evaluation": evaluation,
                       "training": training,
                       "seconds": {"train": round(train_seconds, 3), "evaluate": round(eval_seconds, 3),
                                   "total": round(time.perf_counter() - t0, 3)},
                       "command": self.command, "environment": self._environment(),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._write(path, payload)
            if cfg.keep_models:
                keep = path.with_name(path.stem + ".model")
                shutil.rmtree(keep, ignore_errors=True)
                shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
                os.replace(workdir, keep)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            try:
                self.accelerator.free_memory()
            except Exception:  # pragma: no cover - older accelerate
                pass
        self.counts["trained"] += 1
        self.log(f"{label}: macro nDCG@10 {_fmt(evaluation['macro'].get('ndcg@10'))} | "
                 f"{time.perf_counter() - t0:.1f} s (train {train_seconds:.1f} s)")

    def ratio_free(self, method: BenchmarkMethod, pair: Any) -> bool:
        """No labels and no labelled query text in stage 1: the run does not depend on the label ratio."""
        if method.uses_labels:
            return False
        args = training_arguments(method, pair=pair, ratio=0.2, seed=0, overrides=self.cfg.global_overrides(),
                                  output_dir=str(self.out))
        return not args.alignment.include_queries

    # ------------------------------------------------------------------ one encoder pair
    def run_pair(self, query_encoder: str, document_encoder: str, revisions: tuple[str | None, str | None],
                 tasks: list[Any], methods: list[BenchmarkMethod], cache: Any) -> None:
        cfg = self.cfg
        pair = _make_pair(query_encoder, document_encoder, cfg, cache, *revisions)
        slug = pair_slug(query_encoder, document_encoder)
        self.log(f"== {query_encoder} -> {document_encoder} ({slug}); {len(tasks)} task(s): "
                 f"{', '.join(t.name for t in tasks)}")
        wanted = cfg.methods or list(METHOD_NAMES)
        if "leave_one_out" in cfg.protocols and any(cfg.loo_methods is None or m.name in cfg.loo_methods
                                                    for m in methods):  # refused before any run, not midway
            alone = next((t for t in tasks if all(o.domain == t.domain for o in tasks)), None)
            if alone is not None:
                raise ERAError(f"leave-one-out: no task outside the domain {alone.domain!r} of {alone.name!r} to "
                               "train on; give the tasks their domains (meta.json 'domain') or drop the protocol "
                               "(--protocols in_domain per_task)")
        for name in BASELINE_METHODS:
            if name in wanted:
                self.baseline(name, pair, slug, tasks)
        for protocol in cfg.protocols:
            ratios = [cfg.loo_ratio] if protocol == "leave_one_out" else list(cfg.label_ratios)
            for method in methods:
                if protocol == "leave_one_out" and cfg.loo_methods is not None and method.name not in cfg.loo_methods:
                    continue
                if method.align_on_test and protocol != "leave_one_out":
                    continue
                if isinstance(method.rerank, RerankCalibration) and protocol == "leave_one_out":
                    continue  # calibrating would read the held-out collection's labels
                method_ratios: list[float | None] = [None] if self.ratio_free(method, pair) else list(ratios)
                for ratio in method_ratios:
                    for seed in cfg.seeds:
                        if protocol == "in_domain":
                            self.trained(method, protocol, ratio, seed, pair, slug, tasks, tasks, None)
                            continue
                        if protocol == "per_task":
                            for task in tasks:
                                self.trained(method, protocol, ratio, seed, pair, slug, [task], [task], task.name)
                            continue
                        for held in tasks:
                            train = [t for t in tasks if t.domain != held.domain]
                            self.trained(method, protocol, ratio, seed, pair, slug, train, [held], held.name)


def _quiet_libraries() -> None:
    """No per-run 'Loading weights' / 'Writing model shards' bars from transformers (one line per run instead)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass


def run_benchmark(cfg: BenchmarkConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the benchmark described by ``cfg``; returns counters
    (``trained``, ``reused``, ``baselines_evaluated``, ``baselines_reused``, ``planned``, ``skipped_methods``,
    ``seconds``) and writes the report when ``cfg.report`` is set."""
    from .cache import EmbeddingCache
    from .evaluation import load_tasks

    if log is None:
        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    cfg.validate()
    if not cfg.verbose:
        _quiet_libraries()
    start = time.perf_counter()
    runner = _Runner(cfg, log)
    tasks = load_tasks(cfg.suite)
    names = {t.name for t in tasks}
    unknown = sorted(set(cfg.skip_query_baseline_for) - names)
    if unknown:
        raise ERAError(f"--skip-query-baseline-for: unknown task(s) {unknown}; tasks: {', '.join(sorted(names))}")
    methods = runner.trained_methods()
    cache = EmbeddingCache(cfg.cache_dir)
    pairs = [(cfg.query_encoder, cfg.document_encoder, (cfg.query_encoder_revision, cfg.document_encoder_revision))]
    if cfg.also_same_encoder and cfg.query_encoder != cfg.document_encoder:
        pairs.append((cfg.document_encoder, cfg.document_encoder,
                      (cfg.document_encoder_revision, cfg.document_encoder_revision)))
    for q, d, revisions in pairs:
        runner.run_pair(q, d, revisions, tasks, methods, cache)
    shutil.rmtree(Path(cfg.out) / ".work", ignore_errors=True)
    summary = {**runner.counts, "skipped_methods": runner.skipped_methods,
               "seconds": round(time.perf_counter() - start, 3)}
    if cfg.dry_run:
        log(f"dry run: {summary['planned']} run(s) planned (baselines included); nothing was run")
        return summary
    log(f"benchmark: {summary['trained']} run(s) trained, {summary['reused']} reused, "
        f"{summary['baselines_evaluated']} baseline(s) evaluated, {summary['baselines_reused']} reused "
        f"({summary['seconds']:.1f} s)")
    if cfg.report:
        from .benchmark_report import write_report

        write_report(cfg.out, cfg.report, plots_dir=cfg.plots_dir)
        log(f"wrote {cfg.report}")
    return summary


# ---------------------------------------------------------------------- CLI
def _methods_epilog() -> str:
    lines = ["methods (--methods; default: all):"]
    for name in METHOD_NAMES:
        if name in BASELINE_METHODS:
            lines.append(f"  {name:<26} {method_description(name)}")
        else:
            m = get_method(name)
            over = ", ".join(f"{k}={v}" for k, v in m.overrides.items())
            lines.append(f"  {name:<26} recipe {m.recipe}, mode {m.mode}" + (f", {over}" if over else ""))
    lines += ["", "examples:",
              "  era-hf benchmark --suite ../shared/data --query-encoder sentence-transformers/all-mpnet-base-v2 \\",
              "      --document-encoder sentence-transformers/all-MiniLM-L6-v2 --label-ratios 0.05 0.1 0.2 0.4 \\",
              "      --seeds 3 --out results/ --also-same-encoder --skip-query-baseline-for vaswani \\",
              "      --report BENCHMARKS.md",
              "  era-hf benchmark --report-only --out results/ --report BENCHMARKS.md",
              "  era-hf benchmark --suite DIR --out /tmp/b --methods doc era_reference --quick   # smoke test"]
    return "\n".join(lines)


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``era-hf benchmark``."""
    p = sub.add_parser(
        "benchmark", help="benchmark baselines and ERA variants over label ratios, seeds and protocols",
        description="Every method on every task's fixed test split (split seed 42): zero-shot baselines, trained "
                    "methods per label ratio and seed, in-domain and leave-one-out; one resumable JSON per run "
                    "under --out; optionally BENCHMARKS.md + PNG plots from those files.",
        epilog=_methods_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", nargs="+", action="extend", metavar="SPEC",
                   help="a directory of task directories, task directories, Hub ids or builtin:stdlib-code")
    p.add_argument("--out", required=True, help="results directory (resumable)")
    p.add_argument("--query-encoder", default="sentence-transformers/all-mpnet-base-v2")
    p.add_argument("--document-encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--query-encoder-revision")
    p.add_argument("--document-encoder-revision")
    p.add_argument("--label-ratios", nargs="+", type=float, default=list(DEFAULT_RATIOS), metavar="R",
                   help="label ratios of the in-domain runs (default: 0.05 0.1 0.2 0.4)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="training seeds 0..N-1 (default 3)")
    p.add_argument("--seed-list", nargs="+", type=int, metavar="SEED", help="explicit training seeds")
    p.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                   help="methods to run (default: all; see the list below)")
    p.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    p.add_argument("--loo-ratio", type=float, default=0.2, help="label ratio of leave-one-out (default 0.2)")
    p.add_argument("--loo-methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                   help="trained methods of leave-one-out (default: those of --methods), to bound its cost")
    p.add_argument("--skip-query-baseline-for", nargs="+", action="extend", default=[], metavar="TASK",
                   help="do not run the query baseline on these tasks (re-encoding a large corpus with the query "
                        "encoder; ignored when both encoders are the same model); reported as 'not measured'")
    p.add_argument("--also-same-encoder", action="store_true",
                   help="also run everything with the document encoder on both sides (ERA as pure query-side "
                        "adaptation), in its own <pair> directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_",
                   help="override a training field for every trained run, e.g. adaptation.epochs=3, "
                        "alignment.lr=0.01, head=mlp (applied after the method's own settings; recorded)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: alignment.epochs=2, adaptation.epochs=3 (flagged in the report)")
    p.add_argument("--force", action="store_true", help="recompute runs whose result file is current")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each result exists")
    p.add_argument("--keep-models", action="store_true", help="keep each trained head next to its result file")
    p.add_argument("--cache-dir", help="embedding cache (default $ERA_HF_CACHE or ~/.cache/era_hf/embeddings)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    p.add_argument("--device", help="encoder device (default: cuda if available, else cpu)")
    p.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is available")
    p.add_argument("--verbose", action="store_true", help="training progress bars and per-epoch lines")
    p.add_argument("--report", help="write this Markdown report (BENCHMARKS.md) from the results files")
    p.add_argument("--plots-dir", help="where the report's PNG plots go (default: <out>/plots)")
    p.add_argument("--report-only", action="store_true", help="only (re)generate --report from --out")
    p.set_defaults(func=run_benchmark_cli)


def _check_paths(ns: argparse.Namespace) -> None:
    """Wrong output paths fail before any run starts (the results folder is only read by --dry-run and
    --report-only)."""
    from .atomic import check_writable

    if ns.report is not None:
        check_writable(ns.report, "--report")
    if ns.plots_dir is not None:
        check_writable(ns.plots_dir, "--plots-dir", directory=True)
    if ns.report_only or ns.dry_run:
        if Path(ns.out).exists() and not Path(ns.out).is_dir():
            raise ERAError(f"--out {ns.out!r} is a file, not a results directory")
    else:
        check_writable(ns.out, "--out", directory=True)


def run_benchmark_cli(ns: argparse.Namespace) -> int:
    if ns.report_only:
        if not ns.report:
            raise ERAError("--report-only needs --report PATH")
        _check_paths(ns)
        from .benchmark_report import write_report

        write_report(ns.out, ns.report, plots_dir=ns.plots_dir)
        print(ns.report)
        return 0
    cfg = config_from_namespace(ns)  # every argument checked before _check_paths makes --out
    _check_paths(ns)
    run_benchmark(cfg)
    return 0


def config_from_namespace(ns: argparse.Namespace) -> BenchmarkConfig:
    """The :class:`BenchmarkConfig` of parsed ``era-hf benchmark`` arguments."""
    if not ns.suite:
        raise ERAError("--suite is required (or --report-only)")
    if ns.seeds < 1 and not ns.seed_list:
        raise ERAError(f"--seeds must be >= 1, got {ns.seeds}")
    cfg = BenchmarkConfig(
        suite=list(ns.suite), out=ns.out, query_encoder=ns.query_encoder, document_encoder=ns.document_encoder,
        query_encoder_revision=ns.query_encoder_revision, document_encoder_revision=ns.document_encoder_revision,
        label_ratios=list(dict.fromkeys(ns.label_ratios)), seeds=list(ns.seed_list or range(ns.seeds)),
        methods=list(dict.fromkeys(ns.methods)) if ns.methods else None,
        loo_methods=list(dict.fromkeys(ns.loo_methods)) if ns.loo_methods else None,
        protocols=list(dict.fromkeys(ns.protocols)), loo_ratio=ns.loo_ratio,
        skip_query_baseline_for=list(ns.skip_query_baseline_for), also_same_encoder=ns.also_same_encoder,
        overrides=parse_set(ns.set_), quick=ns.quick, cache_dir=ns.cache_dir, batch_size=ns.batch_size,
        device=ns.device, cpu=ns.cpu, force=ns.force, keep_models=ns.keep_models, verbose=ns.verbose,
        dry_run=ns.dry_run, report=ns.report, plots_dir=ns.plots_dir)
    cfg.validate()
    return cfg
