"""Named recipes: bundles of argument values.

``reference`` is the paper's configuration, spelled out field by field (it equals the
dataclass defaults; a test keeps them in sync), read from the authors' code
(megagonlabs/ERA, ``docs/era-method.md``). Everything else is ours and must say so in its
description. A new recipe is one new :class:`Recipe` entry in :data:`RECIPES` (or
:func:`register_recipe` at run time); a new option is a new field of an argument dataclass.

Example:
    >>> from era_hf.training.recipes import get_recipe
    >>> get_recipe("reference").adaptation["negatives"]
    'topk_percpos'
    >>> args = get_recipe("ridge_init").arguments(tasks=["../shared/data/adi"], output_dir="out")
    >>> args.alignment.init, args.recipe
    ('ridge', 'ridge_init')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..errors import ERAError
from .arguments import AdaptationArguments, AlignmentArguments, TrainingArguments


@dataclass(frozen=True)
class Recipe:
    """A named set of argument values (run-level ``training`` fields and the two phases)."""

    name: str
    description: str
    alignment: Mapping[str, Any] = field(default_factory=dict)
    adaptation: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)

    def arguments(self, **overrides: Any) -> TrainingArguments:
        """TrainingArguments = defaults <- this recipe <- ``overrides`` (phase overrides may be dicts)."""
        align = dict(self.alignment)
        adapt = dict(self.adaptation)
        a_over = overrides.pop("alignment", None)
        b_over = overrides.pop("adaptation", None)
        for over, target, name in ((a_over, align, "alignment"), (b_over, adapt, "adaptation")):
            if over is None:
                continue
            if dataclasses.is_dataclass(over):
                target.clear()
                target.update(dataclasses.asdict(over))
            elif isinstance(over, Mapping):
                target.update(over)
            else:
                raise ERAError(f"{name} overrides must be a dict or a {name} arguments dataclass, got {over!r}")
        values = {**dict(self.training), **overrides, "recipe": self.name}
        known = {f.name for f in fields(TrainingArguments)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ERAError(f"unknown training argument(s) {unknown}; known: {sorted(known)}")
        try:
            args = TrainingArguments(alignment=AlignmentArguments(**align), adaptation=AdaptationArguments(**adapt),
                                     **values)
        except TypeError as err:
            raise ERAError(f"bad arguments for recipe {self.name!r}: {err}") from None
        return args

    def values(self) -> dict[str, Any]:
        """Dotted name -> value of every field this recipe fixes (defaults filled in)."""
        return get_flat(self.arguments(), include_neutral=False)


def get_flat(args: TrainingArguments, include_neutral: bool = False) -> dict[str, Any]:
    return args.flat(include_neutral=include_neutral)


#: The paper's reference defaults, exactly (docs/era-method.md; megagonlabs/ERA).
REFERENCE = Recipe(
    name="reference",
    description="The paper's reference configuration: linear head on L2-normalised query embeddings, PyTorch "
                "default init; stage 1 = 100 epochs of AdamW (lr 1e-3, wd 0.01, batch 256) on 1000 documents "
                "per task (seed 42), cosine loss, 10% held out, no schedule, final weights; stage 2 = InfoNCE "
                "(temperature 0.05, no in-batch negatives) over 1 fixed positive + 5 topk_percpos negatives "
                "(teacher top-2000, < 0.95 x positive, hardest + 4 of the next 9), AdamW lr 1e-5, wd 1e-4, "
                "batch 256, <= 1000 epochs, 10% linear warm-up then linear decay, early stopping on the "
                "validation loss (patience 5), best weights restored.",
    training={"head": "linear", "anchor": False, "head_kwargs": {}},
    alignment={
        "loss": "cosine", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 256, "epochs": 100,
        "docs_per_task": 1000, "sample_seed": 42, "eval_ratio": 0.1, "include_queries": False,
        "init": "random", "refine_epochs": 0, "early_stopping_patience": None,
    },
    adaptation={
        "lr": 1e-5, "weight_decay": 1e-4, "batch_size": 256, "epochs": 1000, "temperature": 0.05,
        "num_negatives": 5, "negatives": "topk_percpos", "teacher": "auto", "teacher_top_k": 2000,
        "percpos_margin": 0.95, "warmup_ratio": 0.1, "schedule": "linear", "early_stopping_patience": 5,
        "early_stopping_min_delta": 0.0, "early_stopping_metric": "loss", "in_batch_negatives": False,
        "all_positives": False, "resample_negatives": False, "anchor_penalty": 0.0,
    },
)

#: Ours (not the paper): stage 1 as a closed-form ridge fit instead of 100 SGD epochs.
RIDGE_INIT = Recipe(
    name="ridge_init",
    description="OURS, not the paper: the reference with stage 1 replaced by a closed-form ridge least-squares fit "
                "(with bias; lambda chosen on the 10% held-out pairs), no SGD refinement. Stage 2 as the reference.",
    training=dict(REFERENCE.training),
    alignment={**REFERENCE.alignment, "init": "ridge", "ridge_lambda": "auto", "refine_epochs": 0},
    adaptation=dict(REFERENCE.adaptation),
)

#: Ours (not the paper): what validation picked on ../shared/data (BENCHMARKS.md). The head is anchored on the
#: document encoder's own query embedding (the untrained model is the cheap baseline); stage 1 is the closed-form
#: score-preserving map refined by listwise distillation of the two encoders' fused scores and BM25 (no labels);
#: stage 2 contrasts every positive with the whole task corpus, stops on validation nDCG@10 and keeps the stage-1
#: head if no epoch beats it. Until 2026-11-26 stage 1 picked the map's weight on labels instead and stage 2's
#: patience was 5 (the benchmark row ``rec_no_distill``). The distilled recipe had the higher mean validation
#: nDCG@10 in 7 of the 8 (protocol, ratio) cells of BENCHMARKS.md (not in_domain r = 0.05), although the old weight
#: pick had seen those validation queries. Until 2026-11-27 the distillation's learning rate was 1e-3 (row
#: ``rec+distill_lr1e-3``); 3e-4 scored best on the train and validation queries of heads distilled without them
#: (docs/quality.md). On the same held-out queries the teacher's BM25 term (alignment.distill_lexical_weight=1)
#: then scored higher, pooled and per task, on every seed; the recipe has it since 2026-11-27 (row
#: ``rec_no_lexical``: without it). Until the same day, stage 1 on another index than the labels' (alignment_tasks)
#: picked the map's weight under the clarity guard instead of distilling (row ``rec_index+clarity_guard``); on that
#: index's judged non-test queries, which training never read, distilling scored higher on every seed and
#: collection (benchmarks/transfer_selection.py). By the same protocol, since 2026-11-27 (nineteenth session) such a
#: model also searches in hybrid with BM25, its weight picked on validation (adaptation.lexical_margin_se='auto';
#: row ``rec_index+dense`` without it); since the twentieth session every model trained on labels does, chosen on
#: each collection's judged queries that are neither test queries nor labels (benchmarks/transfer_selection.py
#: --protocol in_domain / per_task; row ``rec+dense`` without it).
RECOMMENDED = Recipe(
    name="recommended",
    description="OURS, not the paper: anchored linear head normalize(e_doc(q) + g(e_query(q))); stage 1 = closed-form "
                "ridge map that reproduces the query encoder's document scores (alignment.anchored='score'), "
                "then 300 Adam steps (lr 3e-4) per task of listwise distillation (alignment.distill_steps): the "
                "head learns to rank each task's documents as the fused scores cheap(q)·cheap(d) + "
                "strong(q)·strong(d) + the query text's BM25 score (z-scored per query, "
                "alignment.distill_lexical_weight=1) do, on documents and unlabelled non-test queries (no labels; "
                "the strong encoder embeds the documents at training time only), also when stage 1 aligns on "
                "another index than the labels' (alignment_tasks). Stage 2 = InfoNCE of "
                "every positive against all unjudged documents of the task (negatives='corpus', all_positives), AdamW lr "
                "1e-4 without weight decay or schedule, <= 100 epochs, early stopping on validation nDCG@10 "
                "(patience 10) with the stage-1 head competing (keep_start), best weights restored. The model then "
                "searches in hybrid: the adapted query's cosines fused with BM25 of the query text, BM25's weight "
                "(0 = dense) picked on validation (adaptation.lexical_margin_se='auto').",
    training={"head": "linear", "anchor": True, "head_kwargs": {}},
    alignment={**REFERENCE.alignment, "anchored": "score", "ridge_lambda": "auto", "score_weight_queries": "train_val",
               "distill_steps": 300, "distill_lr": 3e-4, "distill_lexical_weight": 1.0},
    adaptation={**REFERENCE.adaptation, "negatives": "corpus", "all_positives": True, "lr": 1e-4,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "schedule": "constant", "epochs": 100,
                "early_stopping_metric": "ndcg@10", "early_stopping_patience": 10, "keep_start": True,
                "lexical_margin_se": "auto"},
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (REFERENCE, RIDGE_INIT, RECOMMENDED)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ERAError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def register_recipe(recipe: Recipe, replace: bool = False) -> None:
    """Add a recipe (e.g. from a research script) so ``--recipe NAME`` finds it."""
    if recipe.name in RECIPES and not replace:
        raise ERAError(f"recipe {recipe.name!r} already exists (pass replace=True)")
    recipe.arguments()  # validates the field names now, not at training time
    RECIPES[recipe.name] = recipe


def recipe_overrides(args: TrainingArguments) -> dict[str, Any]:
    """Result-affecting fields of ``args`` that differ from its recipe: ``{name: {"recipe": a, "used": b}}``.

    Run-level fields that every run sets (tasks and their query logs, encoders, output, mode, ratio, seeds,
    query formats) are not part of a recipe and not listed.
    """
    recipe = get_recipe(args.recipe)
    base = recipe.values()
    used = args.flat(include_neutral=False)
    per_run = {"tasks", "alignment_tasks", "unlabelled_queries", "output_dir", "query_encoder", "document_encoder",
               "query_encoder_revision", "document_encoder_revision", "query_pooling", "document_pooling",
               "query_format", "document_query_format", "query_max_length", "document_max_length", "mode",
               "label_ratio", "seed", "split_seed", "recipe"}
    return {k: {"recipe": base.get(k), "used": v} for k, v in used.items()
            if k not in per_run and base.get(k) != v}


def describe_recipes() -> str:
    return "\n".join(f"{r.name}: {r.description}" for r in RECIPES.values())
