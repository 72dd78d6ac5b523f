"""Markdown for the speed / memory section of BENCHMARKS.md, rendered from ``results/speed/*.json`` only.

    from benchmarks.report_speed import render_speed_section
    text = render_speed_section("results/speed")

Every figure comes from the JSON files written by the benchmark scripts (nothing is typed here);
a benchmark without its JSON file is listed as not run. Standard library only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

ORDER = ("encode_throughput", "train_cost", "query_latency", "index_cost", "memory")
TITLES = {
    "encode_throughput": "Encoding throughput: era_hf vs sentence-transformers",
    "train_cost": "Training cost: ERA adapter vs fine-tuning with sentence-transformers",
    "query_latency": "Query latency in the Space's setting",
    "index_cost": "Index cost: light vs strong document encoder",
    "memory": "Peak memory (RSS)",
}


def _load(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _pct(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _mib(n_bytes: Any) -> str:
    return "–" if n_bytes is None else f"{n_bytes / 2**20:,.0f} MiB"


def _short(model_id: str | None) -> str:
    return "–" if not model_id else str(model_id).rstrip("/").rsplit("/", 1)[-1]


def _load_text(rec: dict[str, Any]) -> str:
    a, b = rec.get("loadavg_start"), rec.get("loadavg_end")
    fmt = lambda v: "/".join(f"{x:.2f}" for x in v) if v else "?"  # noqa: E731
    return f"load average (1/5/15 min) {fmt(a)} at start, {fmt(b)} at end"


def _provenance(rec: dict[str, Any]) -> str:
    env = rec.get("environment", {})
    threads = env.get("torch_threads")
    quick = " **Smoke run (--quick): not for reporting.**" if rec.get("quick") else ""
    return (f"<sub>`{rec.get('command')}` — {rec.get('date')}, {threads} torch thread(s), "
            f"{_load_text(rec)}, {rec.get('wall_seconds')} s wall.</sub>{quick}")


def _verdict(ratio: dict[str, Any], goal: float) -> str:
    """Whether a ratio (median, min, max over rounds) reaches ``goal``, without over-reading a noisy median."""
    med, lo, hi = ratio["median"], ratio["min"], ratio["max"]
    if lo >= goal:
        return f"meets it in every round ({lo:.3f}–{hi:.3f})"
    if hi < goal:
        return f"misses it in every round ({lo:.3f}–{hi:.3f})"
    side = "meets" if med >= goal else "misses"
    return f"{side} it on the median ({med:.3f}), but the rounds range {lo:.3f}–{hi:.3f}: within this run's noise"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ sections
def _encode(rec: dict[str, Any]) -> str:
    res = rec["results"]
    rows = []
    goals = []
    for key in ("minilm", "mpnet"):
        r = res.get(key)
        if not r:
            continue
        tl = r["token_lengths"]
        ratio = r["ratio_era_over_st"]
        rows.append([
            _short(r["model"]),
            f"{r['n_texts']} (tokens: median {_num(tl['median'], 0)}, max {tl['max']}; "
            f"{tl['truncated_at_max_length']} cut at {tl['max_length']})",
            _num(r["texts_per_second"]["era_hf"]["median"], 1),
            _num(r["texts_per_second"]["sentence_transformers"]["median"], 1),
            f"**{ratio['median']:.3f}** ({ratio['min']:.3f}–{ratio['max']:.3f}, {ratio['n']} rounds)",
            f"{r['agreement']['max_abs_diff']:.1e}",
        ])
        goals.append(f"{_short(r['model'])} {_verdict(ratio, 1.0)}")
    r0 = next((res[k] for k in ("minilm", "mpnet") if k in res), None)
    text = [
        "Same model, texts, batch size "
        f"({r0['batch_size'] if r0 else '?'}), token limit ({r0['max_length'] if r0 else '?'} for both), threads "
        f"and L2 normalisation; texts: {r0['texts'] if r0 else '?'}. The two encoders run interleaved; the ratio "
        "is the median of the per-round ratios (range in brackets). Max |diff| compares the two libraries' "
        "embeddings of the same texts.",
        "",
        _table(["model", "texts", "era_hf texts/s", "ST texts/s", "era_hf / ST", "max abs diff"], rows),
        "",
        f"Goal era_hf / ST ≥ 1.0: {'; '.join(goals)}.",
    ]
    pre = [f"{_short(res[k]['model'])} {res[k]['era_hf_length_prepass_seconds']['median']:.3f} s"
           for k in ("minilm", "mpnet") if k in res and "era_hf_length_prepass_seconds" in res[k]]
    if pre:
        text.append(f"era_hf's length pre-pass (tokenising every text once to sort by token count), median: "
                    f"{', '.join(pre)} per call.")
    return "\n".join(text)


def _train(rec: dict[str, Any]) -> str:
    res = rec["results"]
    era, st, nd = res["era"], res["st"], res["ndcg"]
    tasks = ", ".join(f"{t['name']} ({t['documents']:,} docs; {t['split']['train']}/{t['split']['val']}/"
                      f"{t['split']['test']} train/val/test queries)" for t in res["tasks"])
    names = [t["name"] for t in res["tasks"]]

    def per_task(scores: dict[str, Any]) -> list[str]:
        return [_num(scores["ndcg@10"].get(n), 4) for n in names]

    rows = [["no training: document encoder on both sides (baseline)", "–", "–",
             f"{nd['baseline_document_encoder']['macro_ndcg@10']:.4f}", *per_task(nd["baseline_document_encoder"])]]
    if "baseline_query_encoder" in nd:
        rows.append(["no training: query encoder on both sides (corpus re-encoded)", "–", "–",
                     f"{nd['baseline_query_encoder']['macro_ndcg@10']:.4f}", *per_task(nd["baseline_query_encoder"])])
    rows.append([f"ERA, {era['recipe']} recipe, both stages ({era['alignment_epochs']} + {era['adaptation_epochs']} "
                 "epochs), cached embeddings",
                 f"{era['seconds']['median']:.1f} s", "none (index kept)", f"**{nd['era']['macro_ndcg@10']:.4f}**",
                 *per_task(nd["era"])])
    rows.append([f"sentence-transformers fine-tuning of {_short(st['model'])}: {st['loss']}, {st['epochs']} epoch, "
                 f"batch {st['batch_size']}, {st['train_pairs']} pairs ({st['steps']} step(s))",
                 f"{st['seconds']['median']:.1f} s", f"{st['reindex_seconds']:.1f} s ({st['reindex_documents']:,} docs)",
                 f"**{nd['st_finetuned_reencoded_corpus']['macro_ndcg@10']:.4f}**",
                 *per_task(nd["st_finetuned_reencoded_corpus"])])
    if "st_finetuned_queries_frozen_index" in nd:
        rows.append(["same fine-tuned model on the queries only, original index kept", "(same)", "none",
                     f"{nd['st_finetuned_queries_frozen_index']['macro_ndcg@10']:.4f}",
                     *per_task(nd["st_finetuned_queries_frozen_index"])])
    r1, r2 = res["ratio_st_train_over_era"], res["ratio_st_train_plus_reindex_over_era"]
    first = res["era_first_run"]
    return "\n".join([
        f"Encoder pair: {_short(res['pair']['query_encoder'])} → {_short(res['pair']['document_encoder'])} "
        f"({res['pair']['why']}). Tasks: {tasks}. Same split and test queries for every row "
        "(era_hf.evaluation). Times are medians of interleaved rounds.",
        "",
        _table(["method", "training time", "re-indexing", "test nDCG@10 (macro)", *[f"nDCG@10 {n}" for n in names]],
               rows),
        "",
        f"Training time, sentence-transformers / ERA: **{r1['median']:.1f}×** (median of {r1['n']} rounds, "
        f"{r1['min']:.1f}–{r1['max']:.1f}); with the re-indexing the fine-tuned encoder needs: "
        f"**{r2['median']:.1f}×**. ERA's timed runs: {era['cache_during_timed_runs']['misses']} cache misses, "
        f"{era['models_loaded_during_timed_runs']} encoders loaded (stage 1 {era['alignment_seconds']['median']:.1f} s, "
        f"stage 2 {era['adaptation_seconds']['median']:.1f} s). ST model loading ({st['load_seconds']['median']:.1f} s) "
        f"is not in its training time; its optimisation steps alone took {st['step_seconds']['median']:.1f} s. "
        f"ERA's first run of this process took {first['seconds']:.1f} s with {first['cache']['misses']} cache "
        f"misses ({first['models_loaded']} encoders loaded).",
        "",
        _stage1_note(era, st),
    ])


def _stage1_note(era: dict[str, Any], st: dict[str, Any]) -> str:
    per_task = era.get("stage1_texts_per_task") or {}
    if not per_task:
        return ""
    n = sum(per_task.values())
    return (f"ERA's times assume cached embeddings. On a cold cache, stage 1 first runs the query encoder over "
            f"{n:,} texts ({', '.join(f'{k} {v:,}' for k, v in per_task.items())}: at most "
            "`docs_per_task` documents per task, whatever the corpus size). That is a one-time cost comparable "
            f"to encoding those texts, and it is not in the ERA times above. The fine-tuned encoder re-encodes "
            f"every document ({st['reindex_documents']:,} here) and must do it again after each fine-tuning. "
            "These corpora are small, so the two counts are close here. On a large corpus, stage 1 stays at "
            "`docs_per_task` per task while re-indexing grows with the corpus.")


def _latency(rec: dict[str, Any]) -> str:
    res = rec["results"]
    v = res["variants"]
    labels = {
        "era": f"ERA: {_short(res['models']['era']['query_encoder'])} + linear head",
        "era_anchored": f"ERA anchored: {_short(res['models']['era_anchored']['query_encoder'])} + "
                        f"{_short(res['models']['era_anchored']['document_encoder'])} + head",
        "baseline": f"baseline: {_short(res['models']['baseline']['encoder'])} alone",
        "space_request": "whole Space request (SearchService.search: ERA + baseline columns)",
        "era_rerank_cold": "ERA + re-ranking its top 50 with MPNet (Searcher), no candidate embedded before",
        "era_rerank_warm": "ERA + re-ranking its top 50 with MPNet (Searcher), every candidate embedded before",
    }
    rows = []
    for key, label in labels.items():
        if key not in v:
            continue
        c = v[key]["components_ms"]
        p50 = lambda name: _num(c[name]["p50"], 3) if name in c else "–"  # noqa: E731
        share = v[key].get("head_share")
        rows.append([label, _num(v[key]["total_ms"]["p50"], 1), _num(v[key]["total_ms"]["p95"], 1),
                     p50("query_encoder"), p50("anchor_encoder"), p50("head"), p50("search"),
                     _pct(share["median"]) if share else "–"])
    goal = res["goal_head_share_below"]
    verdicts = [f"{labels[k].split(':')[0]} {_pct(v[k]['head_share']['median'])} "
                f"({'meets' if v[k]['head_share']['median'] < goal else 'misses'} it)"
                for k in ("era", "era_anchored") if k in v]
    idx, q = res["index"], res["queries"]
    return "\n".join([
        f"One query at a time (batch {q['batch_size']}), top {res['k']}, {q['timed']} {q['source']} after "
        f"{q['warmup']} warm-up queries; index: {idx['task']} ({idx['documents']:,} documents, "
        f"{_short(idx['document_encoder'])}, {idx['dim']}-d, {idx['faiss_type']}). Variants run round-robin on each "
        "query. Components are p50 of each part separately; the head's share is the median over queries of "
        "head / total.",
        "",
        _table(["variant", "p50 ms", "p95 ms", "query encoder p50", "anchor encoder p50", "head p50", "search p50",
                "head share"], rows),
        "",
        f"Goal: head share < {_pct(goal, 0)}: {'; '.join(verdicts)}. Anchored / plain ERA p50: "
        f"{res['ratios']['era_anchored_over_era_p50']:.2f}×; plain ERA / baseline p50: "
        f"{res['ratios']['era_over_baseline_p50']:.2f}×."
        + (f" Re-ranking / plain ERA p50: {res['ratios']['era_rerank_cold_over_era_p50']:.2f}× cold, "
           f"{res['ratios']['era_rerank_warm_over_era_p50']:.2f}× warm (the first {q['rerank_timed']} timed "
           "queries only, one after the other)." if "era_rerank_cold_over_era_p50" in res["ratios"] else ""),
    ])


def _index(rec: dict[str, Any]) -> str:
    res = rec["results"]
    rows = []
    for key in ("minilm", "mpnet"):
        e = res["encoders"].get(key)
        if not e:
            continue
        ar = e["arithmetic_per_1000_docs"]
        rows.append([_short(e["model"]), str(e["dim"]),
                     f"{e['encode_seconds']['median']:.1f} s", _num(e["docs_per_second"], 1),
                     f"{e['index_faiss_bytes']:,}", f"{ar['encode_seconds']:.0f} s", f"{ar['index_faiss_bytes']:,}"])
    r = res["ratio_mpnet_over_minilm_encode_seconds"]
    return "\n".join([
        f"The same {res['documents']} documents ({res['source']}; token limit {res['max_length']}, batch "
        f"{res['batch_size']}), encoded without cache by each encoder, interleaved over {res['repeats']} rounds "
        "(medians), then indexed with IndexFlatIP and saved.",
        "",
        _table(["encoder", "dim", f"encode {res['documents']} docs", "docs/s", "index.faiss bytes",
                "per 1000 docs: encode (arithmetic)", "per 1000 docs: index.faiss bytes (arithmetic)"], rows),
        "",
        f"MPNet / MiniLM: encoding time **{r['median']:.1f}×** (median of {r['n']} rounds), index size "
        f"**{res['ratio_mpnet_over_minilm_index_bytes']:.2f}×**. The per-1000 columns are arithmetic on the "
        "measured figures (time × 1000 / n; 4 bytes × dim per vector + the measured file header), not measurements.",
    ])


def _memory(rec: dict[str, Any]) -> str:
    res = rec["results"]
    rows = []
    if "import_floor" in res:
        rows.append(["python importing torch + transformers + era_hf, then exit", _mib(res["import_floor"]
                                                                                         ["peak_rss_bytes"]), "–"])
    if "train_era" in res:
        t = res["train_era"]
        rows.append([f"ERA training ({_short(t['pair'][0])} → {_short(t['pair'][1])}, reference recipe, "
                     f"cached embeddings; {t['models_loaded']} encoders loaded)",
                     _mib(t["peak_rss_bytes"]), f"{t['seconds']:.0f} s process"])
    if "train_st" in res:
        t = res["train_st"]
        rows.append([f"sentence-transformers fine-tuning of {_short(t['model'])} ({t['train_pairs']} pairs, "
                     f"{t['steps']} step(s))", _mib(t["peak_rss_bytes"]), f"{t['seconds']:.0f} s process"])
    for key in sorted(k for k in res if k.startswith("space_")):
        s = res[key]
        rows.append([f"Space process `{s['command']}` ({_short(s['pair'][0])} → {_short(s['pair'][1])}, "
                     f"{s['documents']:,}-document index), after {s['queries']} queries",
                     _mib(s["peak_rss_bytes"]),
                     f"after start-up {_mib(s['peak_rss_after_startup_bytes'])}; start-up {s['startup_seconds']:.0f} s; "
                     f"request median {s['client_request_ms']['median']:.0f} ms (HTTP, client side)"])
    extra = ""
    if "ratio_train_st_over_era_peak_rss" in res:
        extra = (f"\n\nPeak RSS of sentence-transformers fine-tuning / ERA training: "
                 f"**{res['ratio_train_st_over_era_peak_rss']:.1f}×**.")
    return ("Each row is a fresh subprocess; peak RSS is its own `ru_maxrss` (read with `os.wait4` when it ends); "
            "the Space's intermediate values are VmHWM from /proc.\n\n"
            + _table(["process", "peak RSS", "notes"], rows) + extra)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "encode_throughput": _encode, "train_cost": _train, "query_latency": _latency, "index_cost": _index,
    "memory": _memory,
}


def _machine(records: dict[str, dict[str, Any]]) -> str:
    envs = [r.get("environment", {}) for r in records.values()]
    if not envs:
        return ""
    e = envs[0]
    p = e.get("packages", {})
    same = all(x.get("packages") == p for x in envs)
    versions = ", ".join(f"{k} {p.get(k)}" for k in ("torch", "transformers", "sentence-transformers", "faiss-cpu",
                                                      "era_hf") if p.get(k))
    git = e.get("git") or {}
    commit = f", era_hf commit {git['commit'][:10]}{' (+ local changes)' if git.get('dirty') else ''}" \
        if git.get("commit") else ""
    return (f"Machine: {e.get('cpu_count')} CPUs ({e.get('processor')}, {e.get('platform')}), "
            f"{'CUDA' if e.get('cuda') else 'no GPU'}; {versions}{commit}"
            + ("" if same else " (versions differ between files: see each JSON)") + ".")


def render_speed_section(results_dir: str | os.PathLike = "results/speed", heading_level: int = 2) -> str:
    """The markdown section (a heading, a machine line, one subsection per benchmark JSON found)."""
    results_dir = Path(results_dir)
    if (results_dir / "speed").is_dir():  # given the benchmark's results root
        results_dir = results_dir / "speed"
    h = "#" * heading_level
    records = {name: rec for name in ORDER if (rec := _load(results_dir, name)) is not None}
    out = [f"{h} Speed and memory", ""]
    if not records:
        return "\n".join(out + [f"No results in {results_dir}: run `python benchmarks/speed.py --all`.", ""])
    out += [
        _machine(records),
        "The machine may be shared with other jobs: each subsection gives the load averages at its start and end. "
        "Compare the ratios (competitors measured interleaved in the same run, medians of repeats) rather than "
        "absolute times. Commands: `benchmarks/README.md`.",
        "",
    ]
    for name in ORDER:
        out.append(f"{h}# {TITLES[name]}")
        out.append("")
        rec = records.get(name)
        if rec is None:
            out += [f"Not run: no `{results_dir / (name + '.json')}` (`python benchmarks/{name}.py`).", ""]
            continue
        out += [RENDERERS[name](rec), "", _provenance(rec), ""]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(render_speed_section(sys.argv[1] if len(sys.argv) > 1 else "results/speed"))
