"""Train on a CUDA device and on the CPU, same tasks, recipes and seed; compare what comes out.

The test suite runs on CPU machines; this is the check for the GPU path of training (heads, closed-form
stage 1, validation-driven picks and early stopping on the device). For each recipe it trains once with
``cpu=True`` and once on the accelerator, evaluates both models on the tasks' test splits, and writes the
per-task nDCG@10 of each, the largest head-weight difference and the timings to ``OUT/cuda_check.json``.
Without a CUDA device only the CPU runs happen (useful to fill an embedding cache to carry elsewhere:
``--record-cache DIR`` copies every cache entry a run reads into DIR).

Example::

    python benchmarks/cuda_check.py --tasks ../shared/data/adi ../shared/data/medline --out /tmp/cuda_check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

RECIPES = ("reference", "recommended")
LABEL_RATIO = 0.2


def run_dir(workdir: Path, recipe: str, cpu: bool) -> Path:
    return workdir / f"{recipe}-{'cpu' if cpu else 'cuda'}"


@contextlib.contextmanager
def record_cache_reads(into: Path | None) -> Iterator[None]:
    """Within the block, copy each embedding-cache entry that a lookup finds into ``into`` (None: nothing)."""
    from era_hf.cache import EmbeddingCache

    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    lookup = EmbeddingCache.lookup

    def recording(self, fingerprint, texts):
        found = lookup(self, fingerprint, texts)
        if found is not None:
            for path in self.paths(self.key(fingerprint, texts)):
                shutil.copy(path, into / path.name)
        return found

    EmbeddingCache.lookup = recording
    try:
        yield
    finally:
        EmbeddingCache.lookup = lookup


def train_and_evaluate(recipe: str, tasks: list[str], cpu: bool, workdir: Path, encoders: dict[str, str],
                       alignment_tasks: list[str]) -> tuple[dict, dict]:
    from safetensors.numpy import load_file

    from era_hf.evaluation import evaluate_suite
    from era_hf.tasks import load_task
    from era_hf.training import get_recipe, train

    out = run_dir(workdir, recipe, cpu)
    args = get_recipe(recipe).arguments(tasks=tasks, output_dir=str(out), label_ratio=LABEL_RATIO, seed=0,
                                        quiet=True, plot=False, overwrite=True, cpu=cpu,
                                        alignment_tasks=alignment_tasks, **encoders)
    start = time.perf_counter()
    train(args)
    wall = time.perf_counter() - start
    log = json.loads((out / "training_log.json").read_text())
    evaluation = evaluate_suite(str(out), [load_task(t) for t in alignment_tasks or tasks])
    run = {"device": log["environment"]["device"], "wall_s": round(wall, 3), "timings": log["timings"],
           "ndcg@10": {t: r["metrics"]["ndcg@10"] for t, r in evaluation["tasks"].items()},
           "macro_ndcg@10": evaluation["macro"]["ndcg@10"]}
    init = log["stages"].get("alignment", {}).get("init", {})
    if isinstance(init, dict) and "weight" in init:
        run["score_map_weight"] = init["weight"]
        if "guard" in init:
            run["guard_kept"] = init["guard"]["kept"]
    return run, load_file(str(out / "model.safetensors"))


def inference_difference(model_dir: Path, queries: list[str]) -> dict:
    """Encode ``queries`` with the saved model on the CPU, then on CUDA (the same weights, float32)."""
    import torch

    from era_hf import ERAModel

    model = ERAModel.from_pretrained(str(model_dir), encoder_kwargs={"dtype": torch.float32})
    on_cpu = model.encode_queries(queries)
    model.to("cuda")
    on_cuda = model.encode_queries(queries)
    cosine = (on_cpu * on_cuda).sum(axis=1) / (np.linalg.norm(on_cpu, axis=1) * np.linalg.norm(on_cuda, axis=1))
    return {"queries": len(queries), "head_device": str(model.head_device),
            "max_abs_embedding_difference": float(np.abs(on_cpu - on_cuda).max()),
            "min_cosine": float(cosine.min())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", required=True, help="task directories (trained on together)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--alignment-tasks", nargs="*", default=[],
                        help="stage 1 aligns on these (and the models are evaluated on them)")
    parser.add_argument("--query-encoder", help="default: the recipe's")
    parser.add_argument("--document-encoder", help="default: the recipe's")
    parser.add_argument("--record-cache", type=Path, help="copy the embedding-cache entries read into this folder")
    parser.add_argument("--inference", type=int, default=0, metavar="N",
                        help="also encode N test queries of the first task with the CPU-trained model on the CPU and "
                             "on CUDA (needs the encoders' weights)")
    args = parser.parse_args(argv)
    encoders = {k: v for k, v in (("query_encoder", args.query_encoder), ("document_encoder", args.document_encoder))
                if v}
    import torch

    cuda = torch.cuda.is_available()
    report: dict = {"cuda_device": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
                    "tasks": [Path(t).name for t in args.tasks],
                    "alignment_tasks": [Path(t).name for t in args.alignment_tasks], "recipes": {}}
    queries: list[str] = []
    if args.inference and cuda:
        from era_hf.benchmark import SPLIT_SEED
        from era_hf.tasks import load_task

        task = load_task(args.tasks[0])
        queries = task.query_texts(list(task.split(LABEL_RATIO, SPLIT_SEED).test)[:args.inference])
    with tempfile.TemporaryDirectory() as tmp, record_cache_reads(args.record_cache):
        for recipe in args.recipes:
            cpu_run, cpu_head = train_and_evaluate(recipe, args.tasks, True, Path(tmp), encoders,
                                                   args.alignment_tasks)
            entry = {"cpu": cpu_run}
            if cuda:
                cuda_run, cuda_head = train_and_evaluate(recipe, args.tasks, False, Path(tmp), encoders,
                                                         args.alignment_tasks)
                entry["cuda"] = cuda_run
                entry["max_abs_head_difference"] = max(float(np.abs(cpu_head[k] - cuda_head[k]).max())
                                                       for k in cpu_head)
                entry["max_abs_ndcg@10_difference"] = max(abs(cpu_run["ndcg@10"][t] - cuda_run["ndcg@10"][t])
                                                          for t in cpu_run["ndcg@10"])
                if queries:
                    entry["inference"] = inference_difference(run_dir(Path(tmp), recipe, True), queries)
            report["recipes"][recipe] = entry
            print(recipe, json.dumps(entry), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda_check.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
