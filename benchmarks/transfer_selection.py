"""Choosing leave-one-out options on the held-out collection's queries that training never read.

In ``leave_one_out`` an adapter is trained on four collections and searches the fifth. Its options (aligning stage
1 on the searched index, ``--alignment-tasks``; distilling there instead of picking a guarded weight; shrinking
the trained correction) were compared on the test split, which should not choose them. The held-out collection
offers a cleaner signal: its judged queries outside the test split (train and validation, ~half of its judged
queries) are never read when training leaves it out, provided stage 1 does not distil their texts. So each
method (a trained method of ``era-hf benchmark``) is trained here with ``alignment.distill_judged_queries=False``
(the distillation ranks documents and unjudged queries only) and scored on those queries' labels. The test split
is never read (neither its texts nor its labels).

What the protocol changes, and so what it does not measure exactly:

- the distillation no longer reads any collection's judged queries, so the training collections' validation
  queries are unseen too: stage 2's early stopping and the shrinkage's scale are picked on unbiased validation
  here, where the deployed recipe's are biased toward the full correction (docs/quality.md, "Shrinking the correction");
- the clarity guard (``score_weight_guard=clarity``, what ``auto`` resolves to when stage 1 aligns on the held-out
  index) still reads the held-out collection's non-test query texts, unlabelled, to pick one weight.

``--protocol in_domain`` / ``per_task`` asks the same of options for labelled collections (one adapter for all, one
per collection). There a collection's train and validation queries are labels, so the scored queries are its judged
queries outside the test split AND outside the label ratio's train and validation sets: the training pool's unused
part (at r = 0.2 about a fifth of the judged queries; none is left at r = 0.4 on the smaller collections, which is
refused). Those results go under ``results/label_selection/<protocol>/`` and their own section
(:func:`render_label_selection_section`).

``--split-seed S`` scores the complement of another test split (training then splits every task with seed S too),
to see whether a choice holds beyond the benchmark's split (42).

Writes ``OUT`` (JSON: command, environment, per seed the nDCG@10 per held-out collection and macro, with the ``doc``
and ``fusion`` baselines on the same queries); files under ``results/transfer_selection/`` (any depth; by
convention ``splitS/`` for other split seeds) become a section of BENCHMARKS.md
(:func:`render_transfer_selection_section`), one row per file, one table per split seed.

Example::

    python benchmarks/transfer_selection.py --suite ../shared/data --method era_recommended_index \\
        --out results/transfer_selection/era_recommended_index.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MINILM, MPNET, Run, ndcg_per_query, set_threads, setup_env,  # noqa: E402
                     suite_folders, train_and_score, trained_method, with_macro)
from stage1_selection import scored_queries  # noqa: E402

FOLDER = "transfer_selection"
#: Where the in_domain / per_task runs go (``results/label_selection/<protocol>/``; their own section).
LABEL_FOLDER = "label_selection"
PROTOCOLS = ("leave_one_out", "in_domain", "per_task")
#: What the protocol sets in every run (and what ``--set`` may therefore not).
PROTOCOL = {"alignment.distill_judged_queries": False}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a folder of task directories (BEIR layout)")
    parser.add_argument("--tasks", nargs="+", default=None, help="task folder names in --suite (default: all)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--method", required=True, help="a method of `era-hf benchmark` trained on labels")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training field, as `era-hf benchmark --set` (recorded)")
    parser.add_argument("--query-encoder", default=MPNET)
    parser.add_argument("--document-encoder", default=MINILM)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--label-ratio", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=None,
                        help="the test split whose complement is scored (default: the benchmark's, 42)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="leave_one_out",
                        help="leave_one_out (default): score each held-out collection's non-test queries; in_domain / "
                             "per_task: score each collection's non-test queries outside the label ratio's train and "
                             "validation sets")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.tasks = suite_folders(parser, args.suite, args.tasks)
    if len(args.tasks) < 2 and args.protocol == "leave_one_out":
        parser.error("--tasks: leave-one-out needs at least two tasks")
    setup_env()
    from era_hf.errors import ERAError
    from era_hf.rerank import RerankCalibration
    from era_hf.tasks import load_suite

    method, args.overrides = trained_method(parser, args.method, args.set, fixed=tuple(PROTOCOL))
    if method.align_on_test and args.protocol != "leave_one_out":
        parser.error(f"--method {method.name} aligns stage 1 on the searched index: a leave_one_out method")
    if isinstance(method.rerank, RerankCalibration) and args.protocol == "leave_one_out":
        parser.error(f"--method {method.name} calibrates re-ranking on the searched collection's validation labels: "
                     "an in_domain / per_task method")
    try:
        tasks = {t.name: t for t in load_suite([str(Path(args.suite) / f) for f in args.tasks])}
    except ERAError as err:
        parser.error(str(err))
    queries = {n: unread_queries(t, args.protocol, args.label_ratio, args.split_seed) for n, t in tasks.items()}
    empty = [n for n, q in queries.items() if not q]
    if empty:
        parser.error(f"--label-ratio {args.label_ratio}: no judged query of {', '.join(empty)} is left outside the "
                     f"test, train and validation sets to score {args.protocol} on")
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="era-transfer-selection-") as work:
        return _measure(args, method, tasks, queries, Path(work))


def unread_queries(task: Any, protocol: str, label_ratio: float, split_seed: int | None = None) -> list[str]:
    """The judged queries training never reads as labels: outside the test split, and for ``in_domain`` /
    ``per_task`` (where the task's own train and validation queries are labels) outside those too."""
    from era_hf.benchmark import SPLIT_SEED

    queries = scored_queries(task, label_ratio, split_seed)
    if protocol == "leave_one_out":
        return queries
    split = task.split(label_ratio, SPLIT_SEED if split_seed is None else split_seed)
    labelled = {*split.train, *split.val}
    return [q for q in queries if q not in labelled]


def _measure(args: argparse.Namespace, method: Any, tasks: dict[str, Any], queries: dict[str, list[str]],
             work: Path) -> dict:
    from era_hf.benchmark import SPLIT_SEED, training_arguments
    from era_hf.evaluation import Baseline, ERAMethod
    from era_hf.task_embeddings import EncoderPair

    split_seed = SPLIT_SEED if args.split_seed is None else args.split_seed
    pair = EncoderPair(args.query_encoder, args.document_encoder)

    def score(m: Any, names: list[str]) -> dict[str, float]:
        # a calibrated re-ranking picks its weight on the split's validation queries (labels in these protocols)
        splits = {n: None if args.protocol == "leave_one_out" else tasks[n].split(args.label_ratio, split_seed)
                  for n in names}
        return {n: float(np.mean(ndcg_per_query(m, pair, tasks[n], queries[n], splits[n]))) for n in names}

    names = list(tasks)
    run = Run(Path(args.out).stem, argparse.Namespace(results_dir=str(Path(args.out).parent)))
    run.results = {"tasks": names, "method": method.name, "overrides": args.overrides, "protocol": PROTOCOL,
                   "split_seed": split_seed, "n_scored": {n: len(q) for n, q in queries.items()}, "seeds": args.seeds,
                   "label_ratio": args.label_ratio, "training_protocol": args.protocol,
                   "baselines": {b: with_macro(score(Baseline(b), names)) for b in ("doc", "fusion")}, "runs": []}
    for seed in args.seeds:
        def make_args(group: list[str]) -> Any:
            return training_arguments(method, pair=pair, ratio=args.label_ratio, seed=seed,
                                      overrides={**args.overrides, **PROTOCOL}, split_seed=split_seed,
                                      output_dir=str(work / f"{seed}-{'+'.join(group)}"))

        run.results["runs"].append(train_and_score(args.protocol, tasks, make_args,
                                                   lambda m, g: score(ERAMethod(m, rerank=method.rerank), g),
                                                   align_on_scored=method.align_on_test))
        print(f"{method.name} seed {seed}: nDCG@10 {run.results['runs'][-1]['macro']:.4f} "
              f"(doc {run.results['baselines']['doc']['macro']:.4f})", flush=True)
    run.write()
    return run.record


def render_transfer_selection_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/transfer_selection/**/*.json`` (leave-one-out; empty when there is
    none): see :func:`_render_tables`."""
    folder = Path(results_dir) / FOLDER
    body = _render_tables(folder, "per held-out collection: judged, outside the test split, never read in training")
    if not body:
        return ""
    lines, provenance = body
    intro = ("`benchmarks/transfer_selection.py` (module docstring): each method trained on four collections with "
             "`alignment.distill_judged_queries=False` (r = 0.2) and scored on the fifth's judged queries outside the "
             "test split, which neither its stage 1 nor its stage 2 read. Test queries are not read. " + provenance
             + ".")
    return "\n".join(["## Choosing leave-one-out options on queries training never read", "", intro, "", *lines])


def render_label_selection_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/label_selection/<protocol>/**/*.json`` (``--protocol in_domain`` /
    ``per_task``; empty when there is none): one subsection per protocol, tables as :func:`_render_tables`."""
    root = Path(results_dir) / LABEL_FOLDER
    parts = []
    for protocol in PROTOCOLS[1:]:
        body = _render_tables(root / protocol, "per collection: judged, outside the test split and the label "
                                               "ratio's train and validation sets, never read in training")
        if body:
            lines, provenance = body
            parts += [f"### {protocol}", "", provenance + ".", "",
                      *[("#" + line if line.startswith("### ") else line) for line in lines]]
    if not parts:
        return ""
    intro = ("`benchmarks/transfer_selection.py --protocol in_domain|per_task` (module docstring): each method "
             "trained as the benchmark's protocol does, with `alignment.distill_judged_queries=False` (r = 0.2), and "
             "scored on each collection's judged queries that are neither test queries nor labels (the training "
             "pool's unused part at that ratio), which neither stage reads. Test queries are not read.")
    return "\n".join(["## Choosing options on labelled collections, on queries training never read", "", intro, "",
                      *parts])


def _render_tables(folder: Path, scored: str) -> tuple[list[str], str] | None:
    """The tables of ``folder/**/*.json`` (None when there is none) and their provenance: per split seed one table,
    the baselines first, then one row per file, each cell the mean over seeds with its difference from ``doc``; then,
    when there are several split seeds, each method's mean gain over ``doc`` across them."""
    import json

    from era_hf.benchmark import SPLIT_SEED

    paths = sorted(folder.rglob("*.json"))
    if not paths:
        return None
    by_split: dict[int, list[tuple[Path, dict]]] = {}
    for path in paths:
        rec = json.loads(path.read_text(encoding="utf-8"))
        by_split.setdefault(rec["results"].get("split_seed", SPLIT_SEED), []).append((path, rec))
    lines: list[str] = []
    across: dict[str, list[tuple[float, float]]] = {}  # row -> (macro gain, worst collection's gain) per split
    for split_seed in sorted(by_split, key=lambda seed: (seed != SPLIT_SEED, seed)):
        records = by_split[split_seed]
        first = records[0][1]["results"]
        names, doc = first["tasks"], first["baselines"]["doc"]
        lines += [f"### Split seed {split_seed}" + (" (the benchmark's)" if split_seed == SPLIT_SEED else ""), "",
                  f"Scored queries ({scored}): " + ", ".join(f"{n} {first['n_scored'][n]}" for n in names) + ".", "",
                  "| nDCG@10 (vs `doc`) | " + " | ".join(names) + " | **macro** | worst vs `doc` | seeds |",
                  "|:---|" + "---:|" * (len(names) + 3)]
        for b, v in first["baselines"].items():
            lines.append(f"| `{b}` | " + " | ".join(f"{v[n]:.4f}" for n in names) + f" | **{v['macro']:.4f}** | | |")
        for path, rec in records:
            r = rec["results"]
            if r["tasks"] != names or r["n_scored"] != first["n_scored"] or r["baselines"]["doc"] != doc:
                raise ValueError(f"{records[0][0]} and {path.name} were scored on different tasks or queries; "
                                 "run them alike")
            mean = {n: float(np.mean([s[n] for s in r["runs"]])) for n in [*names, "macro"]}
            worst = min(names, key=lambda n: mean[n] - doc[n])
            per_seed = " / ".join(f"{s['macro']:.4f}" for s in r["runs"])
            label = f"`{r['method']}`" + "".join(f", `{k}={v}`" for k, v in r["overrides"].items())
            lines.append(f"| {label} | " + " | ".join(f"{mean[n]:.4f} ({mean[n] - doc[n]:+.3f})" for n in names)
                         + f" | **{mean['macro']:.4f}** ({mean['macro'] - doc['macro']:+.4f}) | {worst} "
                         f"{mean[worst] - doc[worst]:+.4f} | {per_seed} |")
            across.setdefault(label, []).append((mean["macro"] - doc["macro"], mean[worst] - doc[worst]))
        lines.append("")
    if len(by_split) > 1:
        lines += ["### Across split seeds", "",
                  "| row | split seeds | mean macro gain over `doc` | splits with no collection below `doc` - 0.005 |",
                  "|:---|---:|---:|---:|"]
        for label, gains in across.items():
            lines.append(f"| {label} | {len(gains)} | {np.mean([g for g, _ in gains]):+.4f} | "
                         f"{sum(w >= -0.005 for _, w in gains)} of {len(gains)} |")
        lines.append("")
    provenance = "; ".join(f"`{p.relative_to(folder)}`: `{rec['command']}`, {rec['date']}, "
                           f"{rec['wall_seconds'] / 60:.1f} min" + "".join(f" ({n})" for n in rec.get("notes", []))
                           for records in by_split.values() for p, rec in records)
    return lines, provenance


if __name__ == "__main__":
    main()
