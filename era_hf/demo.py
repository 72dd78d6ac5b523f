"""``era-hf demo``: the quickstart's main job on the embedded default.

Trains an ERA adapter for the default pair (all-mpnet-base-v2 queries → all-MiniLM-L6-v2 index) on the
built-in ``stdlib-code`` task, evaluates it against the cheap baseline on the test split, builds the
fixed document index for the Space and writes the model card. Everything is cached: a second run
reuses the embeddings, the finished training stages and the index.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OUTPUT = "runs/quickstart"
#: Stage-1 documents per task in the demo: fewer than the reference's 1000 so that the quickstart's
#: cold run (the strong encoder embeds these on CPU) stays within minutes on two cores.
DEMO_ALIGNMENT_DOCS = 200
#: Documents the demo's stage-1 distillation ranks (``alignment.distill_docs_per_task``; the recipe ranks all of a
#: task's): the strong encoder embeds each, so a cap keeps the cold run short on two cores.
DEMO_DISTILL_DOCS = 500


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the quickstart: train, evaluate and index the built-in task with the default pair",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="builtin:stdlib-code", help="task to train and evaluate on")
    p.add_argument("--recipe", default="recommended", help="training recipe (reference = the paper's)")
    p.add_argument("--label-ratio", type=float, default=0.2, help="fraction of the judged queries used as labels")
    p.add_argument("--alignment-docs", type=int, default=DEMO_ALIGNMENT_DOCS,
                   help="stage-1 documents per task (the reference uses 1000)")
    p.add_argument("--distill-docs", type=int, default=DEMO_DISTILL_DOCS,
                   help="documents per task the stage-1 distillation ranks (0 = all, as the recipe does)")
    p.add_argument("--with-query-baseline", action="store_true",
                   help="also score the strong encoder on both sides (re-encodes the corpus: slow on CPU)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for model/, index/ and results.json")
    p.set_defaults(func=run_demo)


def _step(message: str) -> None:
    print(f"[era-hf demo] {message}", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_json, atomic_write_text
    from .evaluation import Baseline, ERAMethod, evaluate_suite, format_table
    from .index import DocumentIndex
    from .model_card import build_model_card
    from .task_embeddings import EncoderPair
    from .tasks import load_task
    from .training import get_recipe, train
    from .training.checkpoints import CheckpointMismatch

    start = time.perf_counter()
    out = Path(args.output)
    model_dir, index_dir = out / "model", out / "index"
    _step(f"loading task {args.task}")
    task = load_task(args.task)
    _step(f"training ERA ({args.recipe} recipe) on {task.name}: {len(task.document_ids())} documents, "
          f"{len(task.judged_query_ids())} judged queries, label ratio {args.label_ratio}")
    training = get_recipe(args.recipe).arguments(
        tasks=[args.task], output_dir=str(model_dir), label_ratio=args.label_ratio, resume=True, quiet=True,
        alignment={"docs_per_task": args.alignment_docs, "distill_docs_per_task": args.distill_docs})
    try:
        train(training)  # continues (or reuses) an interrupted demo run with the same settings
    except CheckpointMismatch as err:  # the demo owns its output folder: an earlier run's settings are no reason to stop
        _step(f"the checkpoints in {model_dir} cannot continue this run ({str(err).split(';')[0]}); starting over")
        training.resume, training.overwrite = False, True
        train(training)

    _step("evaluating on the test split (ERA vs. the cheap index)")
    method = ERAMethod(str(model_dir))
    pair = EncoderPair.from_config(method.config)
    methods = [method, Baseline("doc")] + ([Baseline("query")] if args.with_query_baseline else [])
    results = [evaluate_suite(m, [task], pair, label_ratio=args.label_ratio) for m in methods]
    atomic_write_json(model_dir / "eval_results.json", {"runs": results})

    _step("building the fixed document index (document encoder, embedded once)")
    index = DocumentIndex.build(pair, task.document_ids(), task.document_texts(), list(task.corpus["title"]))
    index.save(index_dir)
    atomic_write_text(model_dir / "README.md", str(build_model_card(model_dir)))

    print(format_table(results), end="")
    print(f"\nmodel: {model_dir}  (model card: {model_dir / 'README.md'})\nindex: {index_dir}"
          f"\ntook {time.perf_counter() - start:.0f} s\n\nSearch it in your browser:\n"
          f"  era-hf space --model {model_dir} --index {index_dir} --task {args.task}")
    return 0
