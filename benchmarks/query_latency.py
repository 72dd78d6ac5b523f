"""Query latency in the Space's setting: one query at a time, query encoding + adapter head + FAISS search.

Index: cranfield's corpus (1400 documents) embedded with MiniLM (through era_hf's embedding cache)
in a ``DocumentIndex`` (``IndexFlatIP``). Queries: cranfield queries, one per call (batch size 1),
top 10. Variants, run round-robin on each query (the starting variant rotates):

* ``era`` -- the default pair: MPNet query encoder + linear head into MiniLM's space;
* ``era_anchored`` -- the same with ``anchor=True``: MPNet AND MiniLM run on the query, the head adds
  its correction to MiniLM's own query embedding;
* ``baseline`` -- MiniLM alone on the query (the Space's second column);
* ``space_request`` -- ``SearchService.search`` of the default pair, the Space's whole request
  (validation, ERA column + baseline column, result rendering to dicts);
* ``era_rerank_cold`` / ``era_rerank_warm`` -- ``Searcher(era, index, Rerank()).search``: ERA's top 50 re-ranked
  with MPNet on both sides (:mod:`era_hf.rerank`), on the first ``--rerank-queries`` timed queries only (a cold
  search embeds 50 documents with MPNet: tens of seconds on a 2-core CPU). Cold: no candidate embedded before (the
  searcher's memory cleared, untimed, before the query), so MPNet embeds all 50 candidates' texts; warm: the same
  query again right after, every candidate's vector kept, so only the query is encoded. A served index lies between
  the two.

Per query the components are timed separately (``perf_counter``): query encoder, anchor encoder,
head (``model.adapt`` under ``inference_mode``), search (``index.search``); the head's share is
head / (sum of the components). The heads are untrained (latency does not depend on their weights).

    python benchmarks/query_latency.py            # -> results/speed/query_latency.json
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, MAX_LENGTH, MINILM, MPNET, Run, add_common_args, log, percentile,  # noqa: E402
                     set_threads, setup_env)

K = 10


def build_index(cache_dir: str | None) -> tuple[Any, Any, Any]:
    """(task, MiniLM DocumentEncoder, DocumentIndex of the task's corpus) -- embeddings through the cache."""
    from era_hf.cache import EmbeddingCache
    from era_hf.encoders import DocumentEncoder
    from era_hf.index import DocumentIndex
    from era_hf.tasks import load_task

    task = load_task(str(DATA_DIR / "cranfield"))
    encoder = DocumentEncoder.from_pretrained(MINILM, max_length=MAX_LENGTH)
    cache = EmbeddingCache(cache_dir)
    t0 = time.perf_counter()
    index = DocumentIndex.build(encoder, task.document_ids(), list(task.corpus["text"]),
                                titles=list(task.corpus["title"]), cache=cache)
    log(f"index: {len(index)} documents, {index.dim}-d ({time.perf_counter() - t0:.1f} s, cache {cache.stats})")
    return task, encoder, index


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50": round(percentile(ms, 50), 3), "p95": round(percentile(ms, 95), 3),
            "mean": round(sum(ms) / len(ms), 3), "min": round(min(ms), 3), "max": round(max(ms), 3), "n": len(ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--queries", type=int, default=100, help="timed queries (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed queries first (default 5)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: era_hf's default cache)")
    parser.add_argument("--rerank-queries", type=int, default=10,
                        help="timed queries of the re-ranking variants, the first of the timed ones (default 10)")
    args = parser.parse_args(argv)
    setup_env()
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    from era_hf import ERAModel
    from era_hf.rerank import Rerank
    from era_hf.search import Searcher
    from era_hf.space import SearchService
    from era_hf.text_encoding import format_queries

    run = Run("query_latency", args)
    threads = set_threads(args.threads)
    n_queries = 20 if args.quick else args.queries
    task, baseline, index = build_index(args.cache_dir)
    instruction = task.instruction
    queries = list(task.queries["text"])
    rng = random.Random(0)
    rng.shuffle(queries)
    warm, timed = queries[:args.warmup], queries[args.warmup:args.warmup + n_queries]

    era = ERAModel.from_encoders(MPNET, MINILM, head="linear").eval()
    anchored = ERAModel.from_encoders(MPNET, MINILM, head="linear", anchor=True).eval()
    service = SearchService(era, index, baseline, instruction=instruction)
    reranking = Searcher(era, index, Rerank())
    set_threads(threads)

    def run_era(model: Any, q: str) -> dict[str, float]:
        cfg = model.config
        t0 = time.perf_counter()
        x = model.encode_raw_queries(format_queries([q], instruction, cfg.query_format), batch_size=1)
        t1 = time.perf_counter()
        a = model.encode_anchor_queries([q], instruction, batch_size=1) if cfg.anchor else None
        t2 = time.perf_counter()
        with torch.inference_mode():
            y = model.adapt(x.numpy(), None if a is None else a.numpy())
        t3 = time.perf_counter()
        index.search(y, K)
        t4 = time.perf_counter()
        parts = {"query_encoder": t1 - t0, "head": t3 - t2, "search": t4 - t3}
        if cfg.anchor:
            parts["anchor_encoder"] = t2 - t1
        return parts

    def run_baseline(q: str) -> dict[str, float]:
        t0 = time.perf_counter()
        e = baseline.encode(format_queries([q], instruction, era.config.document_query_format), batch_size=1)
        t1 = time.perf_counter()
        index.search(e, K)
        t2 = time.perf_counter()
        return {"query_encoder": t1 - t0, "search": t2 - t1}

    def run_space(q: str) -> dict[str, float]:
        t0 = time.perf_counter()
        r = service.search(q, instruction, K)
        t1 = time.perf_counter()
        if r["error"]:
            raise RuntimeError(r["error"])
        return {"request": t1 - t0}

    def run_rerank(q: str) -> None:
        reranking._strong.clear()
        for name in ("era_rerank_cold", "era_rerank_warm"):
            t0 = time.perf_counter()
            reranking.search([q], instruction, K)
            samples[name].append({"request": time.perf_counter() - t0})

    variants = {"era": lambda q: run_era(era, q), "era_anchored": lambda q: run_era(anchored, q),
                "baseline": run_baseline, "space_request": run_space}
    names = list(variants)
    for q in warm:
        for name in names:
            variants[name](q)
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in [*names, "era_rerank_cold", "era_rerank_warm"]}
    n_rerank = min(2 if args.quick else args.rerank_queries, len(timed))
    for i, q in enumerate(timed):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            samples[name].append(variants[name](q))
        if i < n_rerank:
            run_rerank(q)
        if (i + 1) % 25 == 0:
            log(f"  {i + 1}/{len(timed)} queries (load {os.getloadavg()[0]:.2f})")

    results: dict[str, Any] = {}
    for name, rows in samples.items():
        parts = {p: [r[p] for r in rows] for p in rows[0]}
        total = [sum(r.values()) for r in rows]
        entry = {"total_ms": stats_ms(total), "components_ms": {p: stats_ms(v) for p, v in parts.items()}}
        if "head" in parts:
            shares = [r["head"] / sum(r.values()) for r in rows]
            entry["head_share"] = {"median": round(float(np.median(shares)), 5),
                                   "p95": round(percentile(shares, 95), 5),
                                   "of_medians": round(float(np.median(parts["head"]) / np.median(total)), 5)}
        results[name] = entry
    run.results = {
        "threads": threads,
        "k": K,
        "index": {"task": "cranfield", "documents": len(index), "dim": index.dim, "kind": index.kind,
                  "faiss_type": type(index.index).__name__, "document_encoder": MINILM, "max_length": MAX_LENGTH},
        "queries": {"timed": len(timed), "warmup": len(warm), "batch_size": 1, "source": "cranfield queries",
                    "instruction": instruction, "rerank_timed": n_rerank},
        "models": {"era": {"query_encoder": MPNET, "document_encoder": MINILM, "head": "linear", "anchor": False,
                           "query_max_length": era.config.query_max_length, "query_format": era.config.query_format},
                   "era_anchored": {"query_encoder": MPNET, "document_encoder": MINILM, "head": "linear",
                                    "anchor": True},
                   "baseline": {"encoder": MINILM},
                   "era_rerank": {"rerank": Rerank().to_dict()}},
        "variants": results,
        "ratios": {
            "era_anchored_over_era_p50": round(results["era_anchored"]["total_ms"]["p50"]
                                               / results["era"]["total_ms"]["p50"], 3),
            "era_over_baseline_p50": round(results["era"]["total_ms"]["p50"]
                                           / results["baseline"]["total_ms"]["p50"], 3),
            "era_rerank_cold_over_era_p50": round(results["era_rerank_cold"]["total_ms"]["p50"]
                                                  / results["era"]["total_ms"]["p50"], 3),
            "era_rerank_warm_over_era_p50": round(results["era_rerank_warm"]["total_ms"]["p50"]
                                                  / results["era"]["total_ms"]["p50"], 3),
        },
        "goal_head_share_below": 0.02,
    }
    run.notes.append("Heads are untrained (from_encoders): the head's cost does not depend on its weights.")
    run.notes.append("space_request = SearchService.search (the Space's handler minus Gradio's HTTP/queue): "
                     "ERA column (query encoding + head + search) + baseline column + result dicts.")
    run.write()
    for name in names:
        r = results[name]
        log(f"{name}: p50 {r['total_ms']['p50']} ms, p95 {r['total_ms']['p95']} ms"
            + (f", head share {r['head_share']['median']:.4%}" if "head_share" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
