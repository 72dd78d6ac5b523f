"""Choosing stage-1 settings on judged queries that stage 1 never read.

Stage 1 of recipe ``recommended`` distils the teacher's ranking on the documents and on every query text outside
the test split, the validation queries included. So the validation nDCG@10 of a distilled head is biased toward
the stage-1 settings that best imitate the teacher on those very texts: a linear head memorises a few dozen
queries' rankings (on vaswani, held out in leave-one-out, a head distilled on its non-test queries beats the
cheap encoder on them by +0.05 nDCG@10 and loses to it on the test queries). Comparing stage-1 settings there
compares memorisation, not what a user gets on new queries.

This script compares them on queries stage 1 never read, through the package's own trainer. Each named
configuration (``--config NAME[:KEY=VALUE,...]``, ``era-hf benchmark --set`` syntax; the first is the
reference of the comparison) trains stage 1 only (mode ``alignment_only``, no labels) with
``alignment.distill_judged_queries=False``: the distillation ranks documents and unjudged queries only, so the
judged queries outside the test split (train and validation, ~half of each collection's judged queries) stay
unseen. Their labels then score the head. The test split is never read (neither its texts nor its labels).
Protocols: ``in_domain`` (one head for all tasks) and ``per_task`` (one head per task, as ERA is deployed).

Writes ``OUT`` (JSON: command, environment, per protocol, configuration and seed the nDCG@10 per task and macro,
with the ``doc`` and ``fusion`` baselines on the same queries); files under ``results/stage1_selection/`` become
a section of BENCHMARKS.md (:func:`render_stage1_selection_section`).

Example::

    python benchmarks/stage1_selection.py --suite ../shared/data --out results/stage1_selection/lexical.json \\
        --config recipe --config no_lexical:alignment.distill_lexical_weight=0
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
from _common import (MINILM, MPNET, Run, ndcg_per_query, provenance, records_section, set_threads,  # noqa: E402
                     setup_env, suite_folders, train_and_score, with_macro)

#: The stage-1 settings each file records per configuration, as the recipe resolved them when it ran (short names).
RESOLVED = (("alignment.distill_teacher_weight", "strong-encoder weight"), ("alignment.distill_lexical_weight",
            "BM25 weight"), ("alignment.distill_lr", "lr"), ("alignment.distill_steps", "steps"),
            ("alignment.distill_temperature", "temperature"))
#: Fields a configuration may not set: the protocol fixes them.
FIXED = ("mode", "seed", "label_ratio", "split_seed", "alignment.distill_judged_queries", "tasks",
         "alignment_tasks", "output_dir")


def parse_config(text: str) -> tuple[str, dict]:
    """``"NAME:KEY=VALUE,KEY=VALUE"`` (or ``"NAME"``) -> ``(NAME, {dotted key: value})``; raises ValueError."""
    from era_hf.benchmark import parse_set

    name, _, rest = text.partition(":")
    if not name.strip():
        raise ValueError(f"--config {text!r}: give a name, e.g. recipe or "
                         "no_lexical:alignment.distill_lexical_weight=0")
    overrides = parse_set([item for item in rest.split(",") if item.strip()]) if rest.strip() else {}
    fixed = sorted(set(overrides) & set(FIXED))
    if fixed:
        raise ValueError(f"--config {name}: {', '.join(fixed)} is fixed by this benchmark")
    return name.strip(), overrides


def scored_queries(task, label_ratio: float, split_seed: int | None = None) -> list[str]:
    """A task's judged queries outside its test split (train and validation, at any ratio), in task order; the
    benchmark's split unless ``split_seed`` names another."""
    from era_hf.benchmark import SPLIT_SEED

    test = set(task.split(label_ratio, SPLIT_SEED if split_seed is None else split_seed).test)
    return [q for q in task.judged_query_ids() if q not in test]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a folder of task directories (BEIR layout)")
    parser.add_argument("--tasks", nargs="+", default=None, help="task folder names in --suite (default: all)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--config", action="append", required=True, metavar="NAME[:KEY=VALUE,...]",
                        help="a configuration: recipe recommended with these overrides (repeat; the first is the "
                             "reference)")
    parser.add_argument("--query-encoder", default=MPNET)
    parser.add_argument("--document-encoder", default=MINILM)
    parser.add_argument("--protocols", nargs="+", default=["in_domain", "per_task"], choices=["in_domain", "per_task"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label-ratio", type=float, default=0.2, help="only decides the test split's complement")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.tasks = suite_folders(parser, args.suite, args.tasks)
    setup_env()
    from era_hf.errors import ERAError

    try:
        configs = dict(parse_config(c) for c in args.config)
    except (ValueError, ERAError) as err:
        parser.error(str(err))
    if len(configs) != len(args.config):
        parser.error("--config: names must be unique")
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="era-stage1-selection-") as work:
        return _measure(args, configs, Path(work))


def _measure(args: argparse.Namespace, configs: dict[str, dict], work: Path) -> dict:
    from era_hf.benchmark import get_method, training_arguments
    from era_hf.evaluation import Baseline, ERAMethod
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task

    suite = Path(args.suite)
    tasks = {t.name: t for t in (load_task(str(suite / f)) for f in args.tasks)}
    queries = {n: scored_queries(t, args.label_ratio) for n, t in tasks.items()}
    pair = EncoderPair(args.query_encoder, args.document_encoder)

    def score(method, names: list[str]) -> dict[str, float]:
        return {n: float(np.mean(ndcg_per_query(method, pair, tasks[n], queries[n]))) for n in names}

    names = list(tasks)
    run = Run(Path(args.out).stem, argparse.Namespace(results_dir=str(Path(args.out).parent)))
    run.results = {"tasks": names, "n_scored": {n: len(q) for n, q in queries.items()}, "seeds": args.seeds,
                   "label_ratio": args.label_ratio, "configs": configs,
                   "baselines": {b: with_macro(score(Baseline(b), names)) for b in ("doc", "fusion")},
                   "protocols": {}}
    method = get_method("distill_only")  # recipe recommended, stage 1 only
    run.results["resolved"] = {}
    for name, overrides in configs.items():
        flat = training_arguments(method, pair=pair, ratio=args.label_ratio, seed=0, overrides=overrides,
                                  output_dir=str(work)).flat()
        run.results["resolved"][name] = {key: flat[key] for key, _ in RESOLVED}
    for protocol in args.protocols:
        rows = run.results["protocols"][protocol] = {}
        for name, overrides in configs.items():
            rows[name] = []
            for seed in args.seeds:
                def make_args(group: list[str]) -> Any:
                    return training_arguments(
                        method, pair=pair, ratio=args.label_ratio, seed=seed,
                        overrides={**overrides, "alignment.distill_judged_queries": False},
                        output_dir=str(work / f"{protocol}-{name}-{seed}-{'+'.join(group)}"))

                rows[name].append(train_and_score(protocol, tasks, make_args,
                                                  lambda model, group: score(ERAMethod(model), group)))
                print(f"{protocol} {name} seed {seed}: nDCG@10 {rows[name][-1]['macro']:.4f}", flush=True)
    run.write()
    return run.record


def render_stage1_selection_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/stage1_selection/*.json`` (empty when there is none)."""

    def render(path: Path, rec: dict) -> list[str]:
        r = rec["results"]
        names = r["tasks"]

        def settings(name: str) -> str:
            resolved = r.get("resolved", {}).get(name, {})
            return ", ".join(f"{short} {resolved[key]:g}" for key, short in RESOLVED if key in resolved)

        configs = "; ".join(f"`{c}`" + (" (" + ", ".join(f"`{k}={v}`" for k, v in o.items()) + ")" if o else
                                        " (the recipe at the time)") + f": {settings(c)}"
                            for c, o in r["configs"].items())
        out = [f"### `{path.name}`", "",
               "Scored queries (judged, outside the test split, never read by stage 1): "
               + ", ".join(f"{n} {r['n_scored'][n]}" for n in names)
               + f". Configurations: {configs}. Seeds {', '.join(map(str, r['seeds']))}; {provenance(rec)}", "",
               "| nDCG@10 | " + " | ".join(names) + " | **macro** | vs the first |",
               "|:---|" + "---:|" * (len(names) + 2)]
        for b, v in r["baselines"].items():
            out.append(f"| `{b}` | " + " | ".join(f"{v[n]:.4f}" for n in names) + f" | **{v['macro']:.4f}** | |")
        for protocol, rows in r["protocols"].items():
            first = next(iter(rows.values()))
            for name, seeds in rows.items():
                cells = [np.mean([s[n] for s in seeds]) for n in [*names, "macro"]]
                per_seed = " / ".join(f"{s['macro']:.4f}" for s in seeds)
                diffs = [s["macro"] - f["macro"] for s, f in zip(seeds, first)]
                versus = ("" if seeds is first else
                          f"{np.mean(diffs):+.4f}, higher on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds")
                out.append(f"| {protocol}, `{name}` (seeds {per_seed}) | "
                           + " | ".join(f"{c:.4f}" for c in cells[:-1]) + f" | **{cells[-1]:.4f}** | {versus} |")
        return out

    return records_section(
        results_dir, "stage1_selection", "Choosing stage-1 settings on queries stage 1 never read",
        "`benchmarks/stage1_selection.py` (module docstring): stage 1 of recipe `recommended` alone (no labels), "
        "distilled with `alignment.distill_judged_queries=False`, scored on each collection's judged queries outside "
        "the test split, whose texts it never read. The package's own validation numbers are biased for stage-1 "
        "settings (the distillation reads the validation texts); this is how the recipe's stage-1 settings are "
        "picked. Test queries are not read.", render)


if __name__ == "__main__":
    main()
