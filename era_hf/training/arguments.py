"""Training arguments: one dataclass per phase plus the run-level :class:`TrainingArguments`.

SetFit style: every hyper-parameter is a dataclass field whose *default is the paper's reference
value* (``docs/era-method.md``); named recipes (:mod:`era_hf.training.recipes`) are bundles of
field values, and the command line flags are derived from these fields
(``--alignment.lr``, ``--adaptation.epochs``, ``--label-ratio`` ...), so a new option is just a
new field here.

Field metadata: ``help`` (shown by ``--help``), ``choices``, and ``neutral=True`` for settings
that cannot change the trained weights (checkpoint frequency, logging); those may differ when a
run is resumed.

Example:
    >>> from era_hf.training import AdaptationArguments, TrainingArguments
    >>> args = TrainingArguments(tasks=["../shared/data/adi"], output_dir="out",
    ...                          adaptation=AdaptationArguments(epochs=20))
    >>> args.alignment.lr, args.adaptation.lr, args.adaptation.epochs
    (0.001, 1e-05, 20)
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..errors import ERAError

MODES = ("both", "label_only", "alignment_only")
ALIGNMENT_LOSSES = ("cosine", "mse", "smooth_l1")
INITS = ("random", "ridge", "procrustes")
SCORE_WEIGHT_QUERIES = ("val", "train_val")
SCORE_WEIGHT_GUARDS = ("auto", "none", "clarity")
ANCHORED_STAGE1 = ("skip", "ensemble", "score")
NEGATIVE_STRATEGIES = ("topk_percpos", "naive_topk", "random", "corpus")
TEACHERS = ("auto", "stage1", "document")
SCHEDULES = ("linear", "constant")
EARLY_STOPPING_METRICS = ("loss", "ndcg@10")
HEADS = ("linear", "low_rank_residual", "mlp")

DEFAULT_QUERY_ENCODER = "sentence-transformers/all-mpnet-base-v2"
DEFAULT_DOCUMENT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def _f(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class AlignmentArguments:
    """Stage 1, self-supervised alignment on identical texts (defaults = the reference)."""

    loss: str = _f("cosine", "alignment loss between head(query-encoder(x)) and document-encoder(x)",
                   choices=ALIGNMENT_LOSSES)
    lr: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    batch_size: int = _f(256, "global batch size (split across processes)")
    epochs: int = _f(100, "SGD epochs from a random init (no schedule, final weights kept)")
    docs_per_task: int = _f(1000, "documents sampled per task (all when the corpus is smaller)")
    sample_seed: int = _f(42, "seed of the document sample and of the held-out split (random.Random)")
    eval_ratio: float = _f(0.1, "fraction of the pooled texts held out for the eval loss")
    include_queries: bool = _f(False, "also align the train/val query texts (query side: formatted with their "
                                      "instruction; target: the document encoder's embedding of the query); "
                                      "never test queries")
    init: str = _f("random", "head initialisation: random (PyTorch default, the reference), ridge "
                             "(closed-form least squares with bias) or procrustes (orthogonal, equal dims only)",
                   choices=INITS)
    ridge_lambda: float | str = _f("auto", "ridge strength, relative to trace(XcᵀXc)/dim; 'auto' picks it from "
                                           "ridge_grid on the held-out pairs")
    ridge_grid: tuple[float, ...] = _f((1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), "candidate relative ridge strengths (with 'auto', extended in steps "
                                                                               "of x10 while the best sits at an end)")
    refine_epochs: int = _f(0, "SGD epochs after a closed-form init (0 = keep the closed form)")
    smooth_l1_beta: float = _f(1.0, "beta of the smooth_l1 loss")
    early_stopping_patience: int | None = _f(None, "stop when the eval loss has not improved for this many "
                                                   "epochs and restore the best weights (None = off, the reference)")
    anchored: str = _f("skip", "anchored heads (--anchor): 'skip' stage 1 (for identical texts the anchor IS the "
                               "target, so the zero map is already optimal), 'ensemble' (fit the head's map "
                               "like an unanchored head; the model then averages anchor and aligned embedding) or "
                               "'score' (ours: a closed-form map that reproduces the query encoder's own scores "
                               "over documents, mixed into the anchor with a weight picked on validation nDCG@10)",
                       choices=ANCHORED_STAGE1)
    score_weights: tuple[float, ...] = _f((0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
                                          "anchored='score': candidate weights of the score-preserving map relative "
                                          "to the anchor (0 = the cheap baseline), picked on validation nDCG@10")
    score_weight_queries: str = _f("val", "anchored='score': the labelled queries that pick the weight: 'val' or "
                                          "'train_val' (stage 1 does not train on labels, so the train queries are "
                                          "unseen there too: three times the queries at r = 0.2, a steadier pick)",
                                   choices=SCORE_WEIGHT_QUERIES)
    score_weight_guard: str = _f("auto", "anchored='score': 'clarity' (ours) keeps only the weights under which the "
                                         "searched index's own unlabelled non-test queries stand out of its corpus "
                                         "at least as clearly as with the cheap encoder alone (mean top-10 score "
                                         "z-score): a check on the index itself that labels from other "
                                         "collections cannot make; 'auto' = 'clarity' exactly when stage 1 picks "
                                         "the weight (distill_steps 0) and aligns on other tasks' documents "
                                         "(alignment_tasks), else 'none'",
                                 choices=SCORE_WEIGHT_GUARDS)
    score_weight_margin_se: float = _f(0.0, "anchored='score': pick the smallest weight whose validation nDCG@10 "
                                            "is within this many standard errors of the best weight's (the paired "
                                            "per-query difference to weight 0, tasks as strata): 0 = the best "
                                            "weight, 1 = the one-standard-error rule, which keeps the cheap "
                                            "baseline unless the labels show the gain beyond their noise")
    distill_steps: int = _f(0, "anchored='score' (ours): Adam steps per alignment task of listwise distillation "
                               "after the score-preserving map, which then starts at the full teacher weight: the "
                               "head learns to rank each task's documents as the two encoders' fused scores do "
                               "(cheap cosine + distill_teacher_weight x strong cosine), with documents and the "
                               "tasks' unlabelled non-test queries as queries; no labels, so score_weights are not "
                               "tried (0 = off; recipe recommended: 300)")
    distill_teacher_weight: float = _f(1.0, "distillation teacher: weight of the query encoder's own "
                                            "query-document cosine, added to the document encoder's")
    distill_lexical_weight: float = _f(0.0, "distillation teacher (ours): weight of the BM25 score of the query "
                                            "text against each document's text (era_hf.lexical), z-scored per query "
                                            "and multiplied by distill_temperature, so 1 adds the z-score itself to "
                                            "the teacher's softmax logits; no model and no label (0 = off; recipe "
                                            "recommended: 1)")
    distill_temperature: float = _f(0.05, "distillation: softmax temperature of teacher and student over documents")
    distill_lr: float = _f(1e-3, "distillation: Adam learning rate (recipe recommended: 3e-4)")
    distill_batch_size: int = _f(128, "distillation: queries per step")
    distill_pseudo_queries: int = _f(2000, "distillation: documents per task that also serve as queries")
    distill_judged_queries: bool = _f(True, "distillation: also rank the texts of the tasks' judged queries outside "
                                            "the test split (train and validation; never their labels). False: "
                                            "documents and unjudged queries (a query log) only, so those judged "
                                            "queries stay unseen by stage 1 and can score its settings without bias "
                                            "(benchmarks/stage1_selection.py)")
    distill_docs_per_task: int = _f(0, "distillation: documents per task the teacher and the head rank (a sample of "
                                       "sample_seed; 0 = all, which embeds the whole corpus with the query encoder "
                                       "once, at training time only)")
    checkpoint_every: int = _f(10, "save a resumable checkpoint every N epochs", neutral=True)

    def validate(self) -> None:
        _plain_numbers(self)
        _check_choices(self)
        _check_positive(self, "lr", "weight_decay", "batch_size", "docs_per_task", "smooth_l1_beta",
                        "checkpoint_every", "score_weight_margin_se", "distill_teacher_weight", "distill_lexical_weight",
                        "distill_temperature", "distill_lr", "distill_batch_size", "distill_pseudo_queries",
                        allow_zero=("weight_decay", "score_weight_margin_se", "distill_pseudo_queries",
                                    "distill_lexical_weight"))
        _check_nonneg_int(self, "epochs", "refine_epochs", "distill_steps", "distill_docs_per_task")
        _check_int(self, "sample_seed")
        _check_fraction(self, "eval_ratio")
        if self.ridge_lambda != "auto":
            if isinstance(self.ridge_lambda, bool) or not isinstance(self.ridge_lambda, (int, float)) \
                    or not self.ridge_lambda > 0 or not math.isfinite(self.ridge_lambda):
                raise ERAError(f"alignment.ridge_lambda must be 'auto' or a positive number, got {self.ridge_lambda!r}")
        _check_number_list(self, "ridge_grid", positive=True)
        _check_number_list(self, "score_weights", positive=False)
        _check_patience(self)


@dataclass
class AdaptationArguments:
    """Stage 2, supervised adaptation with few labels (defaults = the reference)."""

    lr: float = _f(1e-5, "AdamW learning rate (peak of the schedule)")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    batch_size: int = _f(256, "global batch size (split across processes)")
    epochs: int = _f(1000, "maximum epochs")
    temperature: float = _f(0.05, "InfoNCE temperature over cosine logits")
    num_negatives: int = _f(5, "negatives per training pair (never a judged document)")
    negatives: str = _f("topk_percpos", "negative mining: topk_percpos (teacher top-k, below margin x the "
                                        "positive's score, hardest + random of the next 2k-1), naive_topk, random, corpus (ours: "
                                        "every unjudged document of the query's task; num_negatives is ignored)",
                        choices=NEGATIVE_STRATEGIES)
    teacher: str = _f("auto", "negative-mining teacher: auto (stage-1 head in mode both, the document "
                              "encoder's own query embedding in label_only), stage1, document",
                      choices=TEACHERS)
    teacher_top_k: int = _f(2000, "candidates scored by the teacher")
    percpos_margin: float = _f(0.95, "topk_percpos keeps candidates scoring < margin x the positive's score")
    warmup_ratio: float = _f(0.1, "linear warm-up over this fraction of all steps (of the maximum epochs)")
    schedule: str = _f("linear", "learning-rate schedule after warm-up: linear decay to 0, or constant",
                       choices=SCHEDULES)
    early_stopping_patience: int | None = _f(5, "stop when the validation metric has not improved for this many "
                                                "epochs and restore the best weights (None = off)")
    early_stopping_min_delta: float = _f(0.0, "minimum improvement that resets the patience")
    early_stopping_metric: str = _f("loss", "validation metric for early stopping: loss (the reference) or "
                                            "ndcg@10 (exact search over each task's corpus)",
                                    choices=EARLY_STOPPING_METRICS)
    keep_start: bool = _f(False, "early stopping also considers the starting head (epoch 0, the stage-1 result): "
                                 "when no epoch beats it on validation, stage 2 changes nothing")
    in_batch_negatives: bool = _f(False, "also use the other positives of the global batch from the same task "
                                         "(never a document judged for the query) as negatives")
    all_positives: bool = _f(False, "one training pair per judged positive instead of one random positive per query")
    resample_negatives: bool = _f(False, "draw new negatives every epoch (from the same teacher candidates)")
    anchor_penalty: float = _f(0.0, "weight of an L2 penalty pulling the head toward its stage-1 weights")
    distill_weight: float = _f(0.0, "ours: at every step also add this weight x stage 1's listwise distillation "
                                    "loss (the alignment.distill_* teacher weight, temperature and batch size) on "
                                    "the training tasks' documents and unlabelled non-test queries, so the labels "
                                    "correct the head without unlearning the fused ranking; needs --anchor")
    shrink_margin_se: float | None = _f(None, "ours: after training, scale an anchored head's correction "
                                              "(normalize(anchor + s · project(x))) by the smallest s of "
                                              "shrink_scales whose validation nDCG@10 is within this many standard "
                                              "errors of the best s's (1 = the one-standard-error rule; 0 = the best "
                                              "s); None = off (s = 1). Needs --anchor; after stage 2 only (mode "
                                              "alignment_only reads no label)")
    shrink_scales: tuple[float, ...] = _f((0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0, 1.25),
                                          "shrink_margin_se: the scales tried (0 = the cheap baseline)")
    lexical_margin_se: float | str | None = _f(None, "ours: hybrid search. After training, pick the weight of BM25 "
                                                     "fused with the adapted query's cosines at search time (z-scored "
                                                     "per query; saved as the model's lexical_weight) among "
                                                     "lexical_weights: the smallest whose validation nDCG@10 is within "
                                                     "this many standard errors of the best (0 = the best); None = off "
                                                     "(dense search only); auto = 0 when labels are read (modes both "
                                                     "and label_only), off in mode alignment_only. A number reads "
                                                     "labels: not in mode alignment_only")
    lexical_weights: tuple[float, ...] = _f((0.0, 0.1, 0.2, 0.3, 0.5),
                                            "lexical_margin_se: the BM25 weights tried (0 = dense search only)")
    checkpoint_every: int = _f(10, "save a resumable checkpoint every N epochs", neutral=True)

    def validate(self) -> None:
        _plain_numbers(self)
        _check_choices(self)
        if self.shrink_margin_se is not None:
            _check_positive(self, "shrink_margin_se", allow_zero=("shrink_margin_se",))
        if self.lexical_margin_se not in (None, "auto"):
            _check_positive(self, "lexical_margin_se", allow_zero=("lexical_margin_se",))
        _check_number_list(self, "shrink_scales", positive=False)
        _check_number_list(self, "lexical_weights", positive=False)
        _check_positive(self, "lr", "weight_decay", "batch_size", "temperature", "num_negatives", "teacher_top_k",
                        "percpos_margin", "checkpoint_every", "anchor_penalty", "early_stopping_min_delta",
                        "warmup_ratio", "distill_weight",
                        allow_zero=("weight_decay", "anchor_penalty", "early_stopping_min_delta", "warmup_ratio",
                                    "distill_weight"))
        _check_nonneg_int(self, "epochs")
        if self.negatives == "corpus" and (self.resample_negatives or self.in_batch_negatives):
            raise ERAError("adaptation.negatives='corpus' already contrasts with every unjudged document: "
                           "resample_negatives and in_batch_negatives do not apply")
        if self.warmup_ratio >= 1:
            raise ERAError(f"adaptation.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        _check_patience(self)


def distills(args: "TrainingArguments") -> bool:
    """Whether stage 1 runs the listwise distillation: ``alignment.distill_steps > 0`` on an anchored score map.
    It does so on an index other than the labels' (``alignment_tasks``) too: there, on the held-out collection's
    judged non-test queries that training never read, it beat the clarity-guarded weight pick on every seed and
    every collection (``benchmarks/transfer_selection.py``, 2026-11-27; docs/quality.md, "Leave-one-collection-out").
    ``--alignment.distill-steps 0`` picks the weight instead (under the clarity guard when ``alignment_tasks``
    are given)."""
    al = args.alignment
    return bool(args.anchor and al.anchored == "score" and al.distill_steps)


def resolved_score_weight_guard(args: "TrainingArguments", has_alignment_tasks: bool) -> str:
    """What ``alignment.score_weight_guard`` does in a run: 'clarity' or 'none' ('auto' resolved; no guard
    unless stage 1 picks the weight of the anchored score map, which a distilled map does not)."""
    al = args.alignment
    if not (args.anchor and al.anchored == "score") or distills(args):
        return "none"
    if al.score_weight_guard == "auto":
        return "clarity" if has_alignment_tasks else "none"
    return al.score_weight_guard


def resolved_lexical_margin_se(args: "TrainingArguments") -> float | None:
    """What ``adaptation.lexical_margin_se`` does in a run: the margin of hybrid search's weight pick, or None (dense
    search). 'auto' picks with margin 0 whenever labels are read (the pick needs labelled validation queries). It
    was chosen on judged queries that training never read: with ``alignment_tasks`` on the held-out collections'
    (2026-11-27, nineteenth session), without them on each collection's queries that are neither test queries nor
    labels (twentieth session; docs/quality.md, "The cheap index with BM25, and hybrid search")."""
    margin = args.adaptation.lexical_margin_se
    if margin == "auto":
        return 0.0 if args.mode != "alignment_only" else None
    return margin


@dataclass
class TrainingArguments:
    """A whole training run: data, encoders, head, mode, seeds, output and the two phases.

    ``recipe`` names the recipe these arguments were built from (see
    :meth:`from_recipe`); it is recorded in the saved model, together with every field that
    differs from the recipe.
    """

    tasks: list[str] = _f([], "task specs: BEIR directories, a suite directory of task directories, Hub ids "
                              "(mair:<Task>, BeIR/<name>) or builtin:stdlib-code")
    alignment_tasks: list[str] = _f([], "stage 1 aligns on the documents of these tasks instead of the training "
                                        "tasks' (their corpora and query texts outside the test split are read, "
                                        "never their labels): e.g. the index the adapter will search when its "
                                        "labels come from other collections")
    unlabelled_queries: list[str] = _f([], "query logs without judgments, as TASK=FILE (FILE alone when stage 1 "
                                           "reads one task): .jsonl lines with a 'text' field, or .txt with one "
                                           "query per line; added to the task stage 1 aligns on as unjudged "
                                           "queries, which its distillation and clarity guard read (never labels, "
                                           "never the split); texts equal to the task's queries are left out")
    output_dir: str | None = _f(None, "output directory (model, training_log.json, loss_curves.png, checkpoints/)")
    query_encoder: str = _f(DEFAULT_QUERY_ENCODER, "strong query encoder (Hub id or local path)")
    document_encoder: str = _f(DEFAULT_DOCUMENT_ENCODER, "lightweight document encoder (Hub id or local path)")
    query_encoder_revision: str | None = _f(None, "pinned query-encoder revision")
    document_encoder_revision: str | None = _f(None, "pinned document-encoder revision")
    query_pooling: str | None = _f(None, "query-encoder pooling (default: read from the model)",
                                   choices=("mean", "cls", "last_token"))
    document_pooling: str | None = _f(None, "document-encoder pooling (default: read from the model)",
                                      choices=("mean", "cls", "last_token"))
    query_format: str = _f("auto", "query text for the query encoder: auto, none, reference "
                                   "('Instruct: {instruction}\\nQuery: {query}') or a template with {query}")
    document_query_format: str = _f("auto", "query text for the document encoder (anchor, label_only teacher): "
                                            "auto (what the document encoder was trained with), none, reference "
                                            "or a template")
    query_max_length: int = _f(128, "query-encoder token limit")
    document_max_length: int = _f(256, "document-encoder token limit")
    head: str = _f("linear", "adapter head", choices=HEADS)
    head_kwargs: dict[str, Any] = _f({}, "head settings as JSON, e.g. '{\"rank\": 16}'")
    anchor: bool = _f(False, "anchored head: output = normalize(document-encoder(query) + head(x))")
    mode: str = _f("both", "both (ERA: stage 1 then 2), label_only (stage 2 from random init), "
                           "alignment_only (stage 1 only)", choices=MODES)
    label_ratio: float = _f(0.2, "fraction r of each task's judged queries used as training labels")
    seed: int = _f(42, "seed of python, numpy and torch (init, batch order, positives, negatives)")
    split_seed: int = _f(42, "seed of the train/val/test query split (task.split)")
    recipe: str = _f("reference", "named recipe the hyper-parameters start from")
    resume: bool = _f(False, "continue an interrupted run from OUTPUT/checkpoints", neutral=True)
    overwrite: bool = _f(False, "discard checkpoints of an earlier run in OUTPUT and replace a model saved there "
                                 "(without it, such an OUTPUT is refused)", neutral=True)
    cache_dir: str | None = _f(None, "embedding cache directory (default $ERA_HF_CACHE or "
                                     "~/.cache/era_hf/embeddings)", neutral=True)
    encode_batch_size: int = _f(32, "encoding batch size", neutral=True)
    cpu: bool = _f(False, "train on CPU even when a GPU is available", neutral=True)
    num_threads: int | None = _f(None, "CPU threads of the training loops and closed-form fits (not encoding); "
                                       "None = auto: 1 thread for small work (a step's batch x dims < 2^26, a fit's "
                                       "dims <= 1024), where thread overhead dominates", neutral=True)
    quiet: bool = _f(False, "no progress bars and no per-epoch lines", neutral=True)
    plot: bool = _f(True, "write loss_curves.png", neutral=True)
    stop_after: str | None = _f(None, "testing: stop after 'alignment' or after epoch N of a stage "
                                      "('alignment:N', 'adaptation:N') once its checkpoint is saved", neutral=True,
                                hidden=True)
    alignment: AlignmentArguments = field(default_factory=AlignmentArguments)
    adaptation: AdaptationArguments = field(default_factory=AdaptationArguments)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_recipe(cls, recipe: str = "reference", **overrides: Any) -> "TrainingArguments":
        """Arguments = dataclass defaults, then the recipe's values, then ``overrides``.

        ``alignment`` / ``adaptation`` overrides may be dicts of field values (merged into the
        recipe's phase) or whole phase dataclasses.

        Example:
            >>> args = TrainingArguments.from_recipe("reference", tasks=["t"], output_dir="o",
            ...                                      adaptation={"epochs": 3})
            >>> args.adaptation.epochs, args.adaptation.lr, args.recipe
            (3, 1e-05, 'reference')
        """
        from .recipes import get_recipe

        return get_recipe(recipe).arguments(**overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (phases nested)."""
        return _jsonable(dataclasses.asdict(self))

    def flat(self, include_neutral: bool = True) -> dict[str, Any]:
        """Dotted names -> values (``alignment.lr`` ...), optionally without the result-neutral fields."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("alignment", "adaptation"):
                for g in fields(value):
                    if include_neutral or not g.metadata.get("neutral"):
                        out[f"{f.name}.{g.name}"] = _jsonable(getattr(value, g.name))
            elif include_neutral or not f.metadata.get("neutral"):
                out[f.name] = _jsonable(value)
        return out

    def validate(self) -> None:
        """Raise ERAError naming the first bad field."""
        _plain_numbers(self)
        if isinstance(self.tasks, (str, os.PathLike)):
            self.tasks = [self.tasks]
        if not isinstance(self.tasks, (list, tuple)) or not all(isinstance(t, (str, os.PathLike)) for t in self.tasks):
            raise ERAError(f"tasks must be a list of task specs (paths or Hub ids), got {self.tasks!r}")
        self.tasks = [os.fspath(t) for t in self.tasks]
        if isinstance(self.unlabelled_queries, (str, os.PathLike)):
            self.unlabelled_queries = [self.unlabelled_queries]
        self.unlabelled_queries = [os.fspath(q) for q in self.unlabelled_queries]
        _check_choices(self)
        _check_fraction(self, "label_ratio")
        _check_int(self, "seed", "split_seed")
        _check_positive(self, "query_max_length", "document_max_length", "encode_batch_size")
        if self.num_threads is not None:
            _check_positive(self, "num_threads")
        if not isinstance(self.head_kwargs, dict):
            raise ERAError(f"head_kwargs must be a dict, got {self.head_kwargs!r}")
        for name in ("query_format", "document_query_format"):
            value = getattr(self, name)
            if value != "auto":
                from ..configuration_era import resolve_query_format

                resolve_query_format(value)
        if isinstance(self.alignment, Mapping):
            self.alignment = AlignmentArguments(**self.alignment)
        if isinstance(self.adaptation, Mapping):
            self.adaptation = AdaptationArguments(**self.adaptation)
        self.alignment.validate()
        self.adaptation.validate()
        if self.alignment.distill_steps and not (self.anchor and self.alignment.anchored == "score"):
            raise ERAError("alignment.distill_steps refines the anchored score map: it needs --anchor and "
                           "--alignment.anchored score (as in --recipe recommended); with another head or "
                           "alignment, pass --alignment.distill-steps 0")
        if self.adaptation.distill_weight and not self.anchor:
            raise ERAError("adaptation.distill_weight distils the fused scores into the anchored head: it needs "
                           "--anchor (as in --recipe recommended)")
        if self.adaptation.shrink_margin_se is not None and not self.anchor:
            raise ERAError("adaptation.shrink_margin_se scales an anchored head's correction toward the anchor: it "
                           "needs --anchor (as in --recipe recommended)")
        if self.adaptation.lexical_margin_se not in (None, "auto") and self.mode == "alignment_only":
            raise ERAError("adaptation.lexical_margin_se picks hybrid search's BM25 weight on labelled validation "
                           "queries, but mode alignment_only reads no label")
        al = self.alignment
        if distills(self) and (al.score_weight_margin_se or al.score_weight_guard == "clarity"):
            raise ERAError("alignment.score_weight_margin_se and score_weight_guard='clarity' pick the score map's "
                           "weight on labels; a distilled map (alignment.distill_steps) has no weight to pick: "
                           "pass --alignment.distill-steps 0 to pick the weight instead")
        if self.stop_after is not None:
            parse_stop_after(self.stop_after)
        if self.resume and self.overwrite:
            raise ERAError("--resume and --overwrite conflict: --resume continues the run whose checkpoints are in "
                           "the output directory, --overwrite discards them and starts again; pass one of them")
        if isinstance(self.alignment_tasks, (str, os.PathLike)):
            self.alignment_tasks = [self.alignment_tasks]
        check_alignment_tasks_read(self, bool(self.alignment_tasks), self.anchor)


def check_alignment_tasks_read(args: "TrainingArguments", has_alignment_tasks: bool, anchor: bool) -> None:
    """ERAError when ``alignment_tasks`` are given to a run that never reads them: only stage 1 does (it aligns on
    their documents), and it does not run in mode label_only, nor for an anchored head with
    ``alignment.anchored='skip'`` (``anchor``: the head that is trained, which a given model may fix)."""
    if not has_alignment_tasks:
        return
    if args.mode == "label_only":
        raise ERAError("alignment_tasks: no step of this run reads them; stage 1 aligns on their documents, and mode "
                       "label_only skips stage 1: drop --alignment-tasks or use --mode both")
    if anchor and args.alignment.anchored == "skip":
        raise ERAError("alignment_tasks: no step of this run reads them; stage 1 aligns on their documents, and an "
                       "anchored head with --alignment.anchored skip skips stage 1: drop --alignment-tasks or pass "
                       "--alignment.anchored score (as in --recipe recommended) or ensemble")


def parse_stop_after(value: str) -> tuple[str, int | None]:
    """``'alignment'`` (or ``'stage1'``) -> ('alignment', None); ``'adaptation:3'`` / ``'stage2:3'`` -> ('adaptation', 3)."""
    stage, _, epoch = str(value).partition(":")
    stage = {"stage1": "alignment", "stage2": "adaptation"}.get(stage, stage)
    if stage not in ("alignment", "adaptation") or (epoch and not epoch.isdigit()):
        raise ERAError(f"stop_after must be 'alignment', 'alignment:N' or 'adaptation:N', got {value!r}")
    return stage, int(epoch) if epoch else None


# ---------------------------------------------------------------------- validation helpers
def _plain_numbers(obj: Any) -> None:
    """numpy scalars (``np.int64(3)``, ``np.float32(0.2)``) become Python numbers, as a caller would expect."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            setattr(obj, f.name, value.item())


def _check_choices(obj: Any) -> None:
    """Every field declared with ``choices`` holds one of them (None too where None is the default)."""
    for f in fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices is None or (value is None and f.default is None):
            continue
        if value not in choices:
            raise ERAError(f"{_prefix(obj)}{f.name} must be one of {', '.join(choices)}; got {value!r}")


def _prefix(obj: Any) -> str:
    return {"AlignmentArguments": "alignment.", "AdaptationArguments": "adaptation."}.get(type(obj).__name__, "")


def _check_number_list(obj: Any, name: str, positive: bool) -> None:
    """A non-empty list of finite numbers > 0 (``positive``) or >= 0, stored back as a tuple of floats."""
    values = getattr(obj, name)
    bound = "> 0" if positive else ">= 0"
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)
        for v in values)
    if not ok:
        raise ERAError(f"{_prefix(obj)}{name} must be a non-empty list of numbers {bound}; got {values!r}")
    setattr(obj, name, tuple(float(v) for v in values))


def _check_positive(obj: Any, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value >= 0 if name in allow_zero else value > 0)
        if ok and name in _INT_FIELDS:
            ok = isinstance(value, int)
        if not ok:
            what = "an integer" if name in _INT_FIELDS else "a number"
            bound = ">= 0" if name in allow_zero else "> 0"
            raise ERAError(f"{_prefix(obj)}{name} must be {what} {bound}; got {value!r}")


_INT_FIELDS = {"num_threads", "batch_size", "docs_per_task", "num_negatives", "teacher_top_k", "checkpoint_every",
               "query_max_length", "document_max_length", "encode_batch_size", "distill_batch_size",
               "distill_pseudo_queries"}


def _check_nonneg_int(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ERAError(f"{_prefix(obj)}{name} must be an integer >= 0; got {value!r}")


def _check_int(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ERAError(f"{_prefix(obj)}{name} must be an integer; got {value!r}")


def _check_fraction(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ERAError(f"{_prefix(obj)}{name} must be in (0, 1); got {value!r}")


def _check_patience(obj: Any) -> None:
    p = obj.early_stopping_patience
    if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p <= 0):
        raise ERAError(f"{_prefix(obj)}early_stopping_patience must be a positive integer or None; got {p!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
