"""Peak memory (RSS) of training and of the Space process, one fresh subprocess per measurement.

Each measurement runs in its own child process; its peak RSS is the child's own ``ru_maxrss``
(read with ``os.wait4`` on its pid when it ends), so nothing of the parent or of other
measurements is counted.

* ``import_floor`` -- a process that imports torch, transformers and era_hf and exits (the floor);
* ``train_era`` -- ERA training (reference recipe, both stages) on cached embeddings, as in
  ``train_cost.py`` (same tasks and encoder pair choice);
* ``train_st`` -- the sentence-transformers fine-tuning of ``train_cost.py`` (MNRL, 1 epoch, batch 16)
  on the same pairs;
* ``space_<pair>`` -- ``python -m era_hf.cli space --model DIR --index DIR`` started for real (Gradio
  server), ``--space-queries`` queries sent through ``gradio_client`` to its ``/search`` API, then
  stopped with SIGTERM. Recorded: VmHWM (peak RSS so far) after start-up and after the queries,
  ``ru_maxrss`` at exit, start-up seconds and the client-side request latency. ``minilm``: a
  MiniLM -> MiniLM model (small); ``default``: MPNet -> MiniLM. Index: cranfield (1400 documents,
  MiniLM, through the embedding cache). Heads are untrained (memory does not depend on weights).

    python benchmarks/memory.py            # -> results/speed/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, MAX_LENGTH, MINILM, MPNET, ROOT, Child, Run, add_common_args, log, mib,  # noqa: E402
                     run_child, self_peak_rss_bytes, set_threads, setup_env)

PAIRS = {"minilm": (MINILM, MINILM), "default": (MPNET, MINILM)}
SPACE_START_TIMEOUT = 300


# ------------------------------------------------------------------------------ children
def child_import_floor(_: argparse.Namespace) -> dict[str, Any]:
    import importlib

    for name in ("torch", "transformers", "era_hf"):
        importlib.import_module(name)
    return {}


def _tasks(args: argparse.Namespace) -> list[Any]:
    from era_hf.tasks import load_suite

    return [t for spec in args.tasks for t in load_suite(spec)]


def child_train_era(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    from era_hf.cache import EmbeddingCache
    from era_hf.training import ERATrainer
    from train_cost import era_arguments, pick_pair, training_pairs

    logging.getLogger("era_hf.training").setLevel(logging.WARNING)
    set_threads(args.threads)
    tasks = _tasks(args)
    cache = EmbeddingCache(args.cache_dir)
    pair, why = pick_pair(args.pair, tasks, cache)
    with tempfile.TemporaryDirectory(prefix="era-mem-") as out:
        t0 = time.perf_counter()
        trainer = ERATrainer(pair, tasks, era_arguments(out, args.label_ratio, args.seed))
        trainer.train()
        seconds = time.perf_counter() - t0
    pairs = training_pairs(trainer, pair)
    Path(args.pairs_file).write_text(json.dumps({"model": pair.query_encoder_id, "max_length":
                                                 pair.document_max_length, "pairs": pairs}), encoding="utf-8")
    return {"seconds": round(seconds, 2), "cache": cache.stats, "models_loaded": pair.models_loaded,
            "pair": [pair.query_encoder_id, pair.document_encoder_id], "why": why, "train_pairs": len(pairs)}


def child_train_st(args: argparse.Namespace) -> dict[str, Any]:
    from train_cost import st_finetune

    set_threads(args.threads)
    spec = json.loads(Path(args.pairs_file).read_text(encoding="utf-8"))
    r = st_finetune(spec["model"], [tuple(p) for p in spec["pairs"]], args.seed, spec["max_length"])
    return {"model": spec["model"], "train_seconds": round(r["train_seconds"], 2), "steps": r["steps"],
            "train_pairs": len(spec["pairs"])}


def child_prepare_space(args: argparse.Namespace) -> dict[str, Any]:
    """Write an (untrained) ERA model and the cranfield MiniLM index for the Space."""
    from era_hf import ERAModel
    from era_hf.cache import EmbeddingCache
    from era_hf.encoders import DocumentEncoder
    from era_hf.index import DocumentIndex
    from era_hf.tasks import load_task

    out = Path(args.out)
    q, d = PAIRS[args.space_pair]
    ERAModel.from_encoders(q, d, head="linear").save_pretrained(out / "model")
    task = load_task(str(DATA_DIR / "cranfield"))
    enc = DocumentEncoder.from_pretrained(d, max_length=MAX_LENGTH)
    cache = EmbeddingCache(args.cache_dir)
    index = DocumentIndex.build(enc, task.document_ids(), list(task.corpus["text"]),
                                titles=list(task.corpus["title"]), cache=cache)
    index.save(out / "index")
    return {"documents": len(index), "cache": cache.stats}


CHILDREN = {"import_floor": child_import_floor, "train_era": child_train_era, "train_st": child_train_st,
            "prepare_space": child_prepare_space}


def child_main(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    out = CHILDREN[args.child](args)
    out["self_ru_maxrss_bytes"] = self_peak_rss_bytes()
    print("RESULT " + json.dumps(out))
    return 0


# ------------------------------------------------------------------------------ parent
def _child_argv(args: argparse.Namespace, name: str, *extra: str) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--child", name, "--pair", args.pair,
            "--label-ratio", str(args.label_ratio), "--seed", str(args.seed), "--tasks", *args.tasks]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    return argv + list(extra)


def _parse(result: dict[str, Any], what: str) -> dict[str, Any]:
    if result["returncode"] != 0:
        raise SystemExit(f"{what} failed (exit {result['returncode']}):\n{result['stderr_tail']}")
    lines = [ln for ln in result["stdout"].splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]) if lines else {}


def measure(args: argparse.Namespace, name: str, *extra: str) -> dict[str, Any]:
    log(f"{name} ...")
    res = run_child(_child_argv(args, name, *extra), timeout=600)
    info = _parse(res, name)
    out = {"peak_rss_bytes": res["peak_rss_bytes"], "peak_rss_mib": mib(res["peak_rss_bytes"]),
           "seconds": res["seconds"], **{k: v for k, v in info.items() if k != "self_ru_maxrss_bytes"}}
    log(f"{name}: peak RSS {out['peak_rss_mib']} MiB")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def measure_space(args: argparse.Namespace, space_pair: str) -> dict[str, Any]:
    log(f"space_{space_pair}: preparing model + index ...")
    with tempfile.TemporaryDirectory(prefix="space-mem-") as tmp:
        prep = _parse(run_child(_child_argv(args, "prepare_space", "--out", tmp, "--space-pair", space_pair),
                                timeout=600), "prepare_space")
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [sys.executable, "-m", "era_hf.cli", "space", "--model", f"{tmp}/model", "--index", f"{tmp}/index",
                "--host", "127.0.0.1", "--port", str(port)]
        env = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        if args.threads is not None:
            env["OMP_NUM_THREADS"] = str(args.threads)  # torch's intra-op threads in the server process
        child = Child(argv, env=env, cwd=str(ROOT))
        try:
            deadline = time.perf_counter() + SPACE_START_TIMEOUT
            while not _ready(url):
                if not child.alive():
                    raise SystemExit(f"the Space exited during start-up:\n{child.result()['stderr_tail']}")
                if time.perf_counter() > deadline:
                    raise SystemExit(f"the Space did not answer within {SPACE_START_TIMEOUT} s")
                time.sleep(0.5)
            startup_s = time.perf_counter() - child.t0
            hwm_start = child.vm_hwm_bytes()
            from gradio_client import Client

            client = Client(url, verbose=False)
            queries = _space_queries(args.space_queries)
            latencies = []
            for q in queries:
                t0 = time.perf_counter()
                r = client.predict(q, None, 10, api_name="/search")
                latencies.append(time.perf_counter() - t0)
                if r.get("error"):
                    raise SystemExit(f"the Space answered an error: {r['error']}")
            hwm_queries = child.vm_hwm_bytes()
        finally:
            res = child.wait(timeout=60, terminate=True)
    out = {"pair": list(PAIRS[space_pair]), "documents": prep.get("documents"), "command": " ".join(argv[1:4]),
           "startup_seconds": round(startup_s, 2),
           "peak_rss_after_startup_bytes": hwm_start, "peak_rss_after_startup_mib": mib(hwm_start),
           "peak_rss_after_queries_bytes": hwm_queries, "peak_rss_after_queries_mib": mib(hwm_queries),
           "peak_rss_bytes": res["peak_rss_bytes"], "peak_rss_mib": mib(res["peak_rss_bytes"]),
           "queries": len(queries),
           "client_request_ms": {"median": round(statistics.median(latencies) * 1000, 1),
                                 "max": round(max(latencies) * 1000, 1)},
           "exit": res["returncode"]}
    log(f"space_{space_pair}: peak RSS {out['peak_rss_mib']} MiB (after start-up {out['peak_rss_after_startup_mib']})")
    return out


def _space_queries(n: int) -> list[str]:
    from _common import query_texts

    return query_texts("cranfield")[1][:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--tasks", nargs="+", default=[str(DATA_DIR / "adi"), str(DATA_DIR / "medline")])
    parser.add_argument("--pair", choices=("auto", "default", "minilm"), default="auto",
                        help="training pair (as train_cost.py)")
    parser.add_argument("--label-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--space-pairs", nargs="+", choices=tuple(PAIRS), default=["minilm", "default"])
    parser.add_argument("--space-queries", type=int, default=10)
    parser.add_argument("--only", nargs="+", default=None,
                        choices=("import_floor", "train_era", "train_st", "space"), help="a subset")
    parser.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--space-pair", choices=tuple(PAIRS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup_env()
    if args.child:
        return child_main(args)
    only = set(args.only or ("import_floor", "train_era", "train_st", "space"))
    run = Run("memory", args)
    # The children use --threads (the Space: OMP_NUM_THREADS); set here too so the JSON records it.
    res: dict[str, Any] = {"threads": set_threads(args.threads)}
    if "import_floor" in only:
        res["import_floor"] = measure(args, "import_floor")
    with tempfile.TemporaryDirectory(prefix="mem-pairs-") as tmp:
        pairs_file = os.path.join(tmp, "pairs.json")
        if "train_era" in only or "train_st" in only:
            res["train_era"] = measure(args, "train_era", "--pairs-file", pairs_file)
        if "train_st" in only:
            res["train_st"] = measure(args, "train_st", "--pairs-file", pairs_file)
    if "train_era" in res and "train_st" in res:
        res["ratio_train_st_over_era_peak_rss"] = round(res["train_st"]["peak_rss_bytes"]
                                                        / res["train_era"]["peak_rss_bytes"], 3)
    if "space" in only:
        for p in (["minilm"] if args.quick else args.space_pairs):
            res[f"space_{p}"] = measure_space(args, p)
    run.results = res
    run.notes.append("peak RSS = the child's own ru_maxrss (os.wait4), in bytes; MiB = 2^20 bytes.")
    run.notes.append("train_era includes loading the cached embeddings (memory-mapped) and both stages; no encoder "
                     "is loaded when the cache is warm (see models_loaded).")
    run.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
