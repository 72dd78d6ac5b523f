"""Does a log of past queries, without any judgment, improve the adapter? (stage 1 reads unjudged queries)

Stage 1 of recipe ``recommended`` distils the fused ranking of the two encoders on the task's documents and on
every query text outside the test split, judged or not. So a user who has no labels but has past queries can
append them to the task's ``queries.jsonl`` (ids with no line in ``qrels/``): the split, which only takes
judged queries, does not change, and the distillation sees queries like the ones it will serve. (``era-hf train
--unlabelled-queries FILE`` does the same without editing the task, but it leaves out texts equal to the task's
queries, a test query's included; here the log is made of test queries, so this script appends them instead.)

This script measures that on real collections, through the package's own trainer. Each collection's test
queries are cut in two halves (a seeded permutation): half A plays the query log and half B the future
queries. For each collection a copy of the task is written with half A's texts appended to ``queries.jsonl``
under new ids (``log-<id>``; the same texts, no judgments). The recommended recipe then trains on the
original tasks and on the copies (``--protocol in_domain``: one adapter for all collections; ``per_task``: one
per collection, as ERA is deployed), for each seed and each mode (``alignment_only``: no labels at all;
``both``: with the r = 0.2 labels as well), and every model is scored on half B only, with the ``doc`` and
``fusion`` baselines beside it.

Writes ``OUT`` (JSON: command, environment, per mode and seed the half-B nDCG@10 with and without the log,
per collection); files under ``results/query_log/`` become a section of BENCHMARKS.md
(:func:`render_query_log_section`).

Example::

    python benchmarks/query_log.py --suite ../shared/data --out results/query_log/in_domain.json
    python benchmarks/query_log.py --suite ../shared/data --protocol per_task --out results/query_log/per_task.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MINILM, MPNET, Run, provenance, records_section, set_threads, setup_env,  # noqa: E402
                     suite_folders, train_and_score, with_macro)

LOG_PREFIX = "log-"
HALVES_SEED = 123  # which test queries play the log (half A) and which are scored (half B)


def halves(test_ids: list[str], seed: int = HALVES_SEED) -> tuple[list[str], list[str]]:
    """(half A = the log, half B = the scored queries) of a task's test queries."""
    order = np.random.default_rng(seed).permutation(len(test_ids))
    cut = len(test_ids) // 2
    return [test_ids[i] for i in order[:cut]], [test_ids[i] for i in order[cut:]]


def task_with_log(src: Path, dst: Path, log_ids: list[str], texts: dict[str, str]) -> Path:
    """A copy of the BEIR task ``src`` in ``dst`` whose queries.jsonl also holds ``log_ids``' texts, unjudged."""
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name not in ("queries.jsonl", "meta.json"):
            (dst / entry.name).symlink_to(entry.resolve())
    if (src / "meta.json").exists():  # its recorded checksum of queries.jsonl no longer holds
        meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
        meta.get("sha256", {}).pop("queries.jsonl", None)
        (dst / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    lines = (src / "queries.jsonl").read_text(encoding="utf-8").rstrip("\n").split("\n")
    lines += [json.dumps({"_id": LOG_PREFIX + q, "text": texts[q]}) for q in log_ids]
    (dst / "queries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a folder of task directories (BEIR layout)")
    parser.add_argument("--tasks", nargs="+", default=None, help="task folder names in --suite (default: all)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--query-encoder", default=MPNET)
    parser.add_argument("--document-encoder", default=MINILM)
    parser.add_argument("--modes", nargs="+", default=["alignment_only", "both"], choices=["alignment_only", "both"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label-ratio", type=float, default=0.2)
    parser.add_argument("--protocol", default="in_domain", choices=["in_domain", "per_task"],
                        help="one adapter for all tasks, or one per task")
    parser.add_argument("--distill-steps", type=int, default=None, help="override the recipe's (a smoke run)")
    parser.add_argument("--distill-lr", type=float, default=None, help="override the recipe's distillation "
                                                                       "learning rate")
    parser.add_argument("--distill-lexical-weight", type=float, default=None,
                        help="override the recipe's BM25 weight in the distillation teacher")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.tasks = suite_folders(parser, args.suite, args.tasks)
    setup_env()
    set_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="era-query-log-") as work:
        return _measure(args, Path(work))


def _measure(args: argparse.Namespace, work: Path) -> dict:
    """Writes the task copies (and the models) under ``work``, trains, scores half B, writes ``args.out``."""
    from era_hf.benchmark import SPLIT_SEED
    from era_hf.evaluation import evaluate_suite
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training import TrainingArguments

    suite = Path(args.suite)
    originals, logged, log, scored = {}, {}, {}, {}  # by task name (a meta.json may name it unlike its folder)
    for folder in args.tasks:
        task = load_task(str(suite / folder))
        test = list(task.split(args.label_ratio, SPLIT_SEED).test)
        log[task.name], scored[task.name] = halves(test)
        texts = dict(zip(log[task.name], task.query_texts(log[task.name])))
        copy = load_task(str(task_with_log(suite / folder, work / folder, log[task.name], texts)))
        if list(copy.split(args.label_ratio, SPLIT_SEED).test) != test:
            raise RuntimeError(f"{task.name}: appending unjudged queries changed the split")  # the premise
        originals[task.name], logged[task.name] = task, copy
    names = list(originals)
    pair = EncoderPair(args.query_encoder, args.document_encoder)

    def half_b(method, group: list[str]) -> dict[str, float]:
        res = evaluate_suite(method, [originals[n] for n in group], pair, label_ratio=args.label_ratio,
                             seed=SPLIT_SEED)
        out = {}
        for name, r in res["tasks"].items():
            pq = dict(zip(r["per_query"]["query_ids"], r["per_query"]["ndcg@10"]))
            out[name] = float(np.mean([pq[q] for q in scored[name]]))
        return out

    alignment = {k: v for k, v in (("distill_steps", args.distill_steps), ("distill_lr", args.distill_lr),
                                   ("distill_lexical_weight", args.distill_lexical_weight)) if v is not None}
    over = {"alignment": alignment} if alignment else {}

    run = Run(Path(args.out).stem, argparse.Namespace(results_dir=str(Path(args.out).parent)))
    run.results = {"tasks": names, "n_scored": {n: len(q) for n, q in scored.items()},
                   "n_log": {n: len(q) for n, q in log.items()},
                   "protocol": args.protocol, "label_ratio": args.label_ratio, "seeds": args.seeds,
                   "recipe_overrides": alignment,
                   "baselines": {b: with_macro(half_b(b, names)) for b in ("doc", "fusion")}, "modes": {}}
    for mode in args.modes:
        rows = run.results["modes"][mode] = {"without_log": [], "with_log": []}
        for seed in args.seeds:
            for key, tasks in (("without_log", originals), ("with_log", logged)):
                def make_args(group: list[str]) -> TrainingArguments:
                    return TrainingArguments.from_recipe(
                        "recommended", output_dir=str(work / f"{mode}-{key}-{seed}-{'+'.join(group)}"),
                        query_encoder=args.query_encoder, document_encoder=args.document_encoder, mode=mode,
                        label_ratio=args.label_ratio, seed=seed, quiet=True, plot=False, **over)

                rows[key].append(train_and_score(args.protocol, tasks, make_args, half_b))
                print(f"{mode} seed {seed} {key}: half-B nDCG@10 {rows[key][-1]['macro']:.4f}", flush=True)
    run.write()
    return run.record


def render_query_log_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/query_log/*.json`` (empty when there is none)."""

    def render(path: Path, rec: dict) -> list[str]:
        r = rec["results"]
        names = r["tasks"]
        n_scored = ", ".join(f"{n} {r['n_scored'][n]}" for n in names)
        n_log = ", ".join(f"{n} {r['n_log'][n]}" for n in names)
        out = [f"### `{path.name}`", "",
               f"Scored queries (half B): {n_scored}; log queries (half A): {n_log}. Protocol "
               f"`{r.get('protocol', 'in_domain')}`, seeds "
               f"{', '.join(map(str, r['seeds']))}, r = {r['label_ratio']:g}; {provenance(rec)}", "",
               "| half-B nDCG@10 | " + " | ".join(names) + " | **macro** |",
               "|:---|" + "---:|" * (len(names) + 1)]
        for b, v in r["baselines"].items():
            out.append(f"| `{b}` | " + " | ".join(f"{v[n]:.4f}" for n in names) + f" | **{v['macro']:.4f}** |")
        for mode, rows in r["modes"].items():
            for key in ("without_log", "with_log"):
                cells = [np.mean([row[n] for row in rows[key]]) for n in [*names, "macro"]]
                per_seed = " / ".join(f"{row['macro']:.4f}" for row in rows[key])
                out.append(f"| {mode}, {key.replace('_', ' ')} (seeds {per_seed}) | "
                           + " | ".join(f"{c:.4f}" for c in cells[:-1]) + f" | **{cells[-1]:.4f}** |")
        return out

    return records_section(
        results_dir, "query_log", "A query log without judgments",
        "`benchmarks/query_log.py` (module docstring): each collection's test queries are cut in two halves; half A's "
        "texts are appended to a copy of the task as unjudged queries (a query log), and every model is scored on "
        "half B only. Recipe `recommended`.", render)

if __name__ == "__main__":
    main()
