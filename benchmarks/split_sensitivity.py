"""How much the benchmark's verdicts depend on which judged queries form the test split.

``era-hf benchmark`` scores every method on one fixed split per collection (split seed 42: the judged queries
shuffled, the last 50% are the test queries). These collections are small (medline has 30 judged queries, so 15
test queries), so a comparison on one split can say more about those queries than about the method. This script
measures it two ways:

* **zero-shot, many splits**: the query encoder on both sides (``query``) against the cheap index (``doc``) on the
  test half of ``--zero-shot-splits`` random splits (seeds 0..N-1, per-query values computed once), with the
  benchmark split's rank among them. No training.
* **trained, a few splits**: a benchmark method (``--method``, default ``era_recommended``) trained and scored
  exactly as ``era-hf benchmark`` does (``--protocols`` in_domain / per_task / leave_one_out, ``--label-ratio``,
  training ``--seeds``), once per split seed of ``--split-seeds``; ``doc``, ``query`` and ``doc+lexical`` (the
  cheap index in hybrid with BM25, its weight picked on that split's non-test queries) on the same test queries.
  On split 42 it reproduces the benchmark's result files. A method that aligns on the held-out collection
  (``era_recommended_index``) runs in leave_one_out only, as in the benchmark.

Writes ``OUT`` (JSON: command, environment, per split seed the per-task nDCG@10 of ``doc``, ``query`` and the
method per protocol and seed). Files under ``results/split_sensitivity/`` are merged into one section of
BENCHMARKS.md (:func:`render_split_sensitivity_section`), so split seeds can be run by parallel processes.

Example::

    python benchmarks/split_sensitivity.py --suite ../shared/data --split-seeds 42 0 1 \\
        --out results/split_sensitivity/in_domain_a.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MINILM, MPNET, Run, ndcg_per_query, set_threads, setup_env, suite_folders,  # noqa: E402
                     train_and_score, trained_method, with_macro)

FOLDER = "split_sensitivity"
NDCG = "ndcg@10"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a folder of task directories (BEIR layout)")
    parser.add_argument("--tasks", nargs="+", default=None, help="task folder names in --suite (default: all)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[42, 0, 1, 2, 3, 4],
                        help="split seeds of the trained runs (42 is the benchmark's)")
    parser.add_argument("--zero-shot-splits", type=int, default=200, help="random splits of the zero-shot comparison")
    parser.add_argument("--method", default="era_recommended", help="a method of `era-hf benchmark` (trained)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training field, as `era-hf benchmark --set` (recorded)")
    parser.add_argument("--query-encoder", default=MPNET)
    parser.add_argument("--document-encoder", default=MINILM)
    parser.add_argument("--protocols", nargs="+", default=["in_domain"],
                        choices=["in_domain", "per_task", "leave_one_out"],
                        help="leave_one_out: each task scored by an adapter trained on all the others (its ratio is "
                             "--label-ratio)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--label-ratio", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.tasks = suite_folders(parser, args.suite, args.tasks)
    if len(set(args.split_seeds)) != len(args.split_seeds):
        parser.error("--split-seeds: seeds must be unique")
    if args.zero_shot_splits < 1:
        parser.error("--zero-shot-splits: give at least 1")
    setup_env()
    method, args.overrides = trained_method(parser, args.method, args.set)
    if method.align_on_test and args.protocols != ["leave_one_out"]:
        parser.error(f"--method {args.method} aligns on the held-out task: run it with --protocols leave_one_out "
                     "alone (as era-hf benchmark does)")
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="era-split-sensitivity-") as work:
        return _measure(args, method, Path(work))


def zero_shot_splits(per_query: dict[str, dict[str, float]], task: Any, n_splits: int, label_ratio: float,
                     benchmark_seed: int) -> dict[str, float]:
    """``query`` minus ``doc`` mean nDCG@10 on the test half of splits 0..n_splits-1 (``per_query[baseline][id]``):
    mean, standard deviation, share of splits where ``query`` is higher, the benchmark split's value and the share
    of splits below it, and the value over all judged queries."""
    def gap(ids: list[str]) -> float:
        return float(np.mean([per_query["query"][q] - per_query["doc"][q] for q in ids]))

    gaps = np.array([gap(list(task.split(label_ratio, s).test)) for s in range(n_splits)])
    at_benchmark = gap(list(task.split(label_ratio, benchmark_seed).test))
    return {"mean": float(gaps.mean()), "sd": float(gaps.std()), "share_query_higher": float(np.mean(gaps > 0)),
            "benchmark_split": at_benchmark, "share_below_benchmark_split": float(np.mean(gaps < at_benchmark)),
            "all_judged": gap(task.judged_query_ids())}


def _measure(args: argparse.Namespace, method: Any, work: Path) -> dict:
    from era_hf.benchmark import SPLIT_SEED, training_arguments
    from era_hf.evaluation import Baseline, ERAMethod, evaluate_suite
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task

    suite = Path(args.suite)
    tasks = {t.name: t for t in (load_task(str(suite / f)) for f in args.tasks)}
    names = list(tasks)
    pair = EncoderPair(args.query_encoder, args.document_encoder)

    # the zero-shot baselines' nDCG@10 per judged query, computed once: every split's test queries are among them
    zero_shot = {n: {b: dict(zip(t.judged_query_ids(), ndcg_per_query(Baseline(b), pair, t, t.judged_query_ids())))
                     for b in ("doc", "query")} for n, t in tasks.items()}

    def baseline(name: str, split_seed: int) -> dict[str, float]:
        """A zero-shot baseline's nDCG@10 per task on the test queries of split ``split_seed``."""
        return {n: float(np.mean([zero_shot[n][name][q] for q in t.split(args.label_ratio, split_seed).test]))
                for n, t in tasks.items()}

    def score(model: Any, group: list[str], split_seed: int) -> dict[str, float]:
        """A trained model's nDCG@10 per task of ``group`` on the test queries of split ``split_seed``."""
        ev = evaluate_suite(ERAMethod(model, rerank=method.rerank), [tasks[n] for n in group], pair,
                            label_ratio=args.label_ratio, seed=split_seed)
        return {n: float(ev["tasks"][n]["metrics"][NDCG]) for n in group}

    run = Run(Path(args.out).stem, argparse.Namespace(results_dir=str(Path(args.out).parent)))
    run.results = {"tasks": names, "method": method.name, "overrides": args.overrides,
                   "label_ratio": args.label_ratio, "seeds": args.seeds,
                   "benchmark_split_seed": SPLIT_SEED, "encoders": {"query": args.query_encoder,
                                                                     "document": args.document_encoder},
                   "zero_shot": {"n_splits": args.zero_shot_splits, "tasks": {}}, "splits": {}}
    for n, task in tasks.items():
        run.results["zero_shot"]["tasks"][n] = zero_shot_splits(zero_shot[n], task, args.zero_shot_splits,
                                                                args.label_ratio, SPLIT_SEED)
    for split_seed in args.split_seeds:
        hybrid = evaluate_suite("doc+lexical", list(tasks.values()), pair, label_ratio=args.label_ratio,
                                seed=split_seed)  # its BM25 weight picked on this split's non-test queries
        entry = run.results["splits"][str(split_seed)] = {
            "n_test": {n: len(t.split(args.label_ratio, split_seed).test) for n, t in tasks.items()},
            **{b: with_macro(baseline(b, split_seed)) for b in ("doc", "query")},
            "doc+lexical": with_macro({n: float(r["metrics"][NDCG]) for n, r in hybrid["tasks"].items()}),
            "doc+lexical_weight": hybrid["lexical_weight"], "protocols": {}}
        for protocol in args.protocols:
            rows = entry["protocols"][protocol] = []
            for seed in args.seeds:
                def make_args(group: list[str]) -> Any:
                    folder = work / f"{split_seed}-{protocol}-{seed}-{'+'.join(group)}"
                    return training_arguments(method, pair=pair, ratio=args.label_ratio, seed=seed,
                                              overrides=args.overrides, output_dir=str(folder), split_seed=split_seed)

                rows.append(train_and_score(protocol, tasks, make_args,
                                            lambda model, group: score(model, group, split_seed),
                                            align_on_scored=method.align_on_test))
                print(f"split {split_seed} | {protocol} | seed {seed}: {method.name} {rows[-1]['macro']:.4f}, "
                      f"doc {entry['doc']['macro']:.4f}", flush=True)
    run.write()
    return run.record


# ---------------------------------------------------------------------- BENCHMARKS.md section
def _merged(results_dir: Path) -> tuple[list[dict], dict[tuple, dict]]:
    """The records under ``results_dir/split_sensitivity`` and their trained splits keyed by (method, its overrides,
    label ratio, encoders, split seed), each with the protocols of every file that holds it (a protocol two files
    both hold for a split is taken from the first by file name)."""
    records, splits = [], {}
    for path in sorted((results_dir / FOLDER).glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        rec["_file"] = path.name
        records.append(rec)
        r = rec["results"]
        key = (r["method"], json.dumps(r["overrides"], sort_keys=True), r["label_ratio"], r["encoders"]["query"],
               r["encoders"]["document"])
        for seed, entry in r["splits"].items():
            merged = splits.setdefault((*key, int(seed)), {**entry, "protocols": {}})
            for protocol, rows in entry["protocols"].items():
                merged["protocols"].setdefault(protocol, rows)
    return records, splits


def render_split_sensitivity_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/split_sensitivity/*.json`` (empty when there is none)."""
    records, splits = _merged(Path(results_dir))
    if not records:
        return ""
    first = records[0]["results"]
    names = first["tasks"]
    out = ["## How much the verdicts depend on the test split", "",
           "`benchmarks/split_sensitivity.py` (module docstring). The benchmark scores every method on one split per "
           f"collection (split seed {first['benchmark_split_seed']}, the last 50% of the shuffled judged queries). "
           "Here the same comparisons are made on other splits. Files:", "",
           *(f"- `{rec['_file']}`: `{rec['command']}`, {rec['date']}, {rec['wall_seconds'] / 60:.1f} min"
             for rec in records), ""]
    zs = first["zero_shot"]
    out += [f"**Zero-shot, {zs['n_splits']} random splits** (`{first['encoders']['query']}` on both sides minus "
            f"`{first['encoders']['document']}` on both sides, mean test nDCG@10; no training):", "",
            "| collection | all judged queries | over the splits: mean ± sd | splits where `query` is higher | "
            f"split {first['benchmark_split_seed']} | splits below split {first['benchmark_split_seed']} |",
            "|:---|---:|---:|---:|---:|---:|"]
    for n in names:
        z = zs["tasks"][n]
        out.append(f"| {n} | {z['all_judged']:+.4f} | {z['mean']:+.4f} ± {z['sd']:.4f} | "
                   f"{z['share_query_higher']:.0%} | {z['benchmark_split']:+.4f} | "
                   f"{z['share_below_benchmark_split']:.0%} |")
    groups: dict[tuple, dict[int, dict]] = {}
    for (*key, seed), entry in sorted(splits.items(), key=lambda kv: (kv[0][:-1], kv[0][-1] != 42, kv[0][-1])):
        groups.setdefault(tuple(key), {})[seed] = entry
    for (method, overrides, ratio, query_encoder, document_encoder), by_seed in groups.items():
        label = f"`{method}`" + "".join(f", `{k}={v}`" for k, v in json.loads(overrides).items())
        if (query_encoder, document_encoder) != (first["encoders"]["query"], first["encoders"]["document"]):
            label += f", `{query_encoder}` → `{document_encoder}`"
        for protocol in sorted({p for e in by_seed.values() for p in e["protocols"]}):
            out += _trained_table(label, ratio, protocol, {s: e for s, e in by_seed.items()
                                                           if protocol in e["protocols"]}, names)
    return "\n".join(out)


def _trained_table(label: str, ratio: float, protocol: str, by_seed: dict[int, dict], names: list[str]) -> list[str]:
    def mean(entry: dict, task: str) -> float:
        return float(np.mean([row[task] for row in entry["protocols"][protocol]]))

    cols = [*names, "macro"]
    # files from before the doc+lexical baseline was scored here leave its columns out of their table
    lexical = all("doc+lexical" in e for e in by_seed.values())
    out = ["", f"**{label}, {protocol}, r = {ratio:g}**: test nDCG@10 minus `doc` (the cheap index) and minus "
           "`query` (the query encoder on both sides, corpus re-encoded)"
           + (", and the macro minus `doc+lexical` (the cheap index in hybrid with BM25)" if lexical else "")
           + ", per split seed; the method's value is the mean over its training seeds.", "",
           "| split seed | seeds | `doc` macro | `query` macro | " + ("`doc+lexical` macro | " if lexical else "")
           + "method macro | " + " | ".join(f"{c} − doc" for c in cols) + " | "
           + " | ".join(f"{c} − query" for c in cols) + (" | macro − doc+lexical" if lexical else "") + " |",
           "|:---|---:|" + "---:|" * (3 + 2 * len(cols) + 2 * lexical)]
    # the columns compared with each reference: every one with doc and query, the macro with doc+lexical
    gaps = {ref: {c: [] for c in refs} for ref, refs in
            (("doc", cols), ("query", cols), *((("doc+lexical", ["macro"]),) if lexical else ()))}
    for seed, e in by_seed.items():
        for ref, per_col in gaps.items():
            for c, values in per_col.items():
                values.append(mean(e, c) - e[ref][c])
        out.append(f"| {seed} | {len(e['protocols'][protocol])} | {e['doc']['macro']:.4f} | {e['query']['macro']:.4f} "
                   + (f"| {e['doc+lexical']['macro']:.4f} (BM25 × {e['doc+lexical_weight']:g}) " if lexical else "")
                   + f"| {mean(e, 'macro'):.4f} | " + _cells(gaps, lambda g: f"{g[-1]:+.4f}") + " |")
    n = len(by_seed)
    empty = "| | | | " + "| " * lexical
    out.append(f"| mean of {n} {empty}| " + _cells(gaps, lambda g: f"**{np.mean(g):+.4f}**") + " |")
    out.append(f"| worst of {n} {empty}| " + _cells(gaps, lambda g: f"{min(g):+.4f}") + " |")
    out.append(f"| splits ≥ 0 {empty}| " + _cells(gaps, lambda g: f"{sum(x >= 0 for x in g)} of {n}") + " |")
    return out


def _cells(gaps: dict[str, dict[str, list[float]]], fmt: Any) -> str:
    """One table row's gap cells, reference by reference and column by column, in the header's order."""
    return " | ".join(fmt(values) for per_col in gaps.values() for values in per_col.values())


if __name__ == "__main__":
    main()
