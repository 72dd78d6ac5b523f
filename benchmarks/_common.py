"""Shared helpers of the speed benchmarks: environment record, interleaved timing, texts, peak RSS, JSON output.

Every benchmark script writes one ``results/speed/<name>.json`` (atomically) holding

* ``command``  -- the exact command line that produced it;
* ``environment`` -- package versions (torch, transformers, sentence-transformers, faiss, era_hf, ...),
  CPU count, torch threads, Python, platform, git commit, date;
* ``loadavg_start`` / ``loadavg_end`` -- ``os.getloadavg()`` (1, 5, 15 min) when the run started / ended:
  on a shared machine the absolute timings depend on the load, the ratios much less;
* ``results`` -- the benchmark's own figures.

Timing protocol: competitors run interleaved (A B, then B A, ...) after one warm-up each, and the
figures are medians over the repeats; a ratio is the median of the per-round ratios, so slow
drifts of the machine's load affect both sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "results" / "speed"
DATA_DIR = Path(os.environ.get("ERA_BENCH_DATA", "/work/shared/data"))
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
#: Token limit used for BOTH libraries in the encoding comparison (ST's own defaults differ:
#: MiniLM 256, MPNet 384), and the document-side limit of era_hf.
MAX_LENGTH = 256
BATCH_SIZE = 32
PACKAGES = ("torch", "transformers", "sentence-transformers", "faiss-cpu", "era_hf", "datasets", "accelerate",
            "tokenizers", "numpy", "gradio")


def setup_env() -> None:
    """Offline, quiet, deterministic-ish defaults (before importing torch / transformers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every competitor (default: torch's default, usually the core count)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help=f"output folder (default {RESULTS_DIR})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats / texts (a smoke run, not for reporting)")


def set_threads(threads: int | None) -> int:
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    return int(torch.get_num_threads())


# ------------------------------------------------------------------------------ environment
def git_commit() -> dict[str, Any]:
    """The repository commit (read-only git calls) and whether the working tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """era_hf's benchmark environment record plus these packages, the processor, offline mode and git."""
    from era_hf.benchmark import environment as base_environment

    return {**base_environment(extra_packages=PACKAGES), "processor": platform.processor() or platform.machine(),
            "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"), "git": git_commit()}


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def records_section(results_dir: str | os.PathLike, folder: str, heading: str, intro: str,
                    render_record: Callable[[Path, dict[str, Any]], list[str]]) -> str:
    """A script's BENCHMARKS.md section: ``## heading``, ``intro``, then the lines ``render_record(path, record)``
    gives for every ``results_dir/folder/*.json`` by file name, each block followed by a blank line; empty when
    there is no such file."""
    import json

    paths = sorted((Path(results_dir) / folder).glob("*.json"))
    if not paths:
        return ""
    out = [f"## {heading}", "", intro, ""]
    for path in paths:
        out += [*render_record(path, json.loads(path.read_text(encoding="utf-8"))), ""]
    return "\n".join(out)


def suite_folders(parser: argparse.ArgumentParser, suite: str, tasks: Sequence[str] | None) -> list[str]:
    """The task folders of ``suite`` (``tasks``, or every folder holding a corpus.jsonl); a missing suite or task
    is refused by ``parser`` (one line, exit 2)."""
    root = Path(suite)
    if not root.is_dir():
        parser.error(f"--suite {suite}: not a directory")
    missing = [n for n in tasks or [] if not (root / n / "corpus.jsonl").is_file()]
    if missing:
        parser.error(f"--tasks: no task folder (with corpus.jsonl) named {', '.join(missing)} in {suite}")
    return list(tasks or sorted(p.name for p in root.iterdir() if (p / "corpus.jsonl").exists()))


def trained_method(parser: argparse.ArgumentParser, name: str, set_items: Sequence[str],
                   fixed: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """The `era-hf benchmark` method ``name`` (trained on labels) and the overrides of ``set_items`` (``--set
    KEY=VALUE``, parsed as the benchmark does); an unknown method, a method without labels, a bad item, or an item
    that sets a field the benchmark (or the script: ``fixed``) sets itself is refused by ``parser`` (one line,
    exit 2)."""
    from era_hf.benchmark import RESERVED, get_method, parse_set
    from era_hf.errors import ERAError

    try:
        method = get_method(name)
    except ERAError as err:
        parser.error(f"--method: {err}")
    try:
        overrides = parse_set(set_items)
    except (ValueError, ERAError) as err:
        parser.error(str(err))
    taken = sorted(k for k in overrides if k in RESERVED or k in fixed)
    if taken:
        parser.error(f"--set {', '.join(taken)}: fixed by this benchmark")
    if not method.uses_labels:
        parser.error(f"--method {name}: give a method trained on labels")
    return method, overrides


def with_macro(per_task: Mapping[str, float]) -> dict[str, float]:
    """``per_task`` plus its unweighted mean over tasks under ``"macro"``."""
    return {**per_task, "macro": sum(per_task.values()) / len(per_task)}


def ndcg_per_query(method: Any, pair: Any, task: Any, query_ids: Sequence[str], split: Any = None) -> list[float]:
    """nDCG@10 of each of ``query_ids`` when ``method`` (an :mod:`era_hf.evaluation` method: a baseline or an
    ``ERAMethod``) searches ``task``'s whole corpus exactly, in hybrid search when it has a ``lexical_weight``,
    re-ranked when it has a ``rerank``; a ``RerankCalibration`` picks its weight on ``split``'s validation queries
    (``era_hf.evaluation.task_rerank``), so it needs ``split``."""
    from era_hf.evaluation import check_lexical_weight, rank_queries, strong_views, task_rerank
    from era_hf.metrics import retrieval_metrics

    weight = check_lexical_weight(getattr(method, "lexical_weight", 0.0))  # doc+lexical's "validation" is refused
    rerank, _ = task_rerank(getattr(method, "rerank", None), method, pair, task, split, weight)
    ranked = rank_queries(task, query_ids, method.query_embeddings(pair, task, query_ids),
                          method.corpus_embeddings(pair, task), lexical_weight=weight, rerank=rerank,
                          strong=strong_views(method, pair, task, query_ids) if rerank is not None else None)
    return [float(v) for v in retrieval_metrics(list(query_ids), ranked, task.qrels)["ndcg@10"]]


def train_and_score(protocol: str, tasks: Mapping[str, Any], make_args: Callable[[list[str]], Any],
                    score: Callable[[Any, list[str]], dict[str, float]], align_on_scored: bool = False
                    ) -> dict[str, float]:
    """Train one adapter for all ``tasks`` (``in_domain``), one per task (``per_task``, as ERA is deployed) or one per
    task on all the others (``leave_one_out``), each with ``make_args(training task names)``; ``score(model,
    scored task names)`` gives the scored tasks' values. ``align_on_scored``: stage 1 also aligns on the scored
    tasks' documents (``alignment_tasks``, a benchmark method's ``align_on_test``). Returns every task's value and
    their macro mean (:func:`with_macro`)."""
    from era_hf.training import ERATrainer

    names = list(tasks)
    if protocol == "in_domain":
        runs = [(names, names)]
    elif protocol == "per_task":
        runs = [([n], [n]) for n in names]
    else:
        runs = [([m for m in names if m != n], [n]) for n in names]
    values: dict[str, float] = {}
    for trained_on, scored in runs:
        trainer = ERATrainer(None, [tasks[n] for n in trained_on], make_args(trained_on),
                             alignment_tasks=[tasks[n] for n in scored] if align_on_scored else ())
        values.update(score(trainer.train(), scored))
    return with_macro(values)


def provenance(record: dict[str, Any]) -> str:
    """How and when a result file was made: its command, date and wall time."""
    return f"`{record['command']}`, {record['date']}, {record['wall_seconds'] / 60:.1f} min."


class Run:
    """One benchmark run: records the command, environment and load averages; writes the JSON at the end.

    Example::

        run = Run("encode_throughput", args)
        ... run.results["minilm"] = {...}
        run.write()   # results/speed/encode_throughput.json
    """

    def __init__(self, name: str, args: argparse.Namespace | None = None) -> None:
        self.name = name
        self.results_dir = Path(getattr(args, "results_dir", None) or RESULTS_DIR)
        self.t0 = time.perf_counter()
        self.record: dict[str, Any] = {
            "benchmark": name,
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "date": now_utc(),
            "quick": bool(getattr(args, "quick", False)),
            "loadavg_start": loadavg(),
        }
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []

    def write(self) -> Path:
        from era_hf.atomic import atomic_write_json

        self.record["environment"] = environment()  # after set_threads: records the threads actually used
        self.record["loadavg_end"] = loadavg()
        self.record["wall_seconds"] = round(time.perf_counter() - self.t0, 2)
        self.record["notes"] = self.notes
        self.record["results"] = self.results
        path = self.results_dir / f"{self.name}.json"
        atomic_write_json(path, _jsonable(self.record))
        print(f"wrote {path}", file=sys.stderr)
        return path


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    return obj


# ------------------------------------------------------------------------------ timing
def interleaved(candidates: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each candidate over ``repeats`` rounds, run interleaved.

    Each candidate runs ``warmup`` times first (untimed). Round r runs the candidates in order
    when r is even and in reverse order when r is odd (A B, B A, ...), so neither side always
    runs first after the other.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
        if log is not None:
            log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
                + f"  (load {os.getloadavg()[0]:.2f})")
    return times


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median / min / max / all of a list of measurements."""
    vals = [float(v) for v in values]
    return {"median": round(statistics.median(vals), digits), "min": round(min(vals), digits),
            "max": round(max(vals), digits), "n": len(vals), "values": [round(v, digits) for v in vals]}


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Per-round ratios ``numerator[i] / denominator[i]`` and their median."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return summary(ratios, digits)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ------------------------------------------------------------------------------ data
def task_dir(name: str) -> Path:
    path = DATA_DIR / name
    if not (path / "corpus.jsonl").is_file():
        raise SystemExit(f"benchmark data missing: {path}/corpus.jsonl (set ERA_BENCH_DATA to the folder of "
                         "BEIR-style task directories)")
    return path


def _task(name: str) -> Any:
    from era_hf.tasks import load_task

    return load_task(str(task_dir(name)))


def document_texts(name: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of a task's corpus, as era_hf embeds them."""
    task = _task(name)
    return task.document_ids(), task.document_texts()


def query_texts(name: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of a task's queries, judged or not."""
    task = _task(name)
    ids = task.query_ids()
    return ids, task.query_texts(ids)


def mixed_texts(n: int, task: str = "cranfield", query_share: float = 0.25, seed: int = 0) -> list[str]:
    """``n`` texts of mixed lengths: documents and queries of ``task``, shuffled (fixed seed)."""
    _, docs = document_texts(task)
    _, queries = query_texts(task)
    rng = random.Random(seed)
    n_q = min(len(queries), int(round(n * query_share)))
    picked = rng.sample(queries, n_q) + rng.sample([d for d in docs if d.strip()], n - n_q)
    rng.shuffle(picked)
    return picked


def token_length_stats(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    lengths = [len(x) for x in tokenizer(list(texts), add_special_tokens=True, truncation=False,
                                         verbose=False)["input_ids"]]
    return {"n": len(lengths), "min": min(lengths), "median": statistics.median(lengths), "max": max(lengths),
            "truncated_at_max_length": sum(length > max_length for length in lengths), "max_length": max_length}


# ------------------------------------------------------------------------------ memory
class Child:
    """A child process whose own peak RSS is read when it ends (``os.wait4`` on its pid: ``ru_maxrss``).

    stdout / stderr go to temporary files (no pipe can fill up and block the child).
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> None:
        import tempfile

        self.argv = list(argv)
        self._out = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err, text=True,
                                     env={**os.environ, **(env or {})}, cwd=cwd)
        self.returncode: int | None = None
        self.peak_rss_bytes: int | None = None
        self.seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def vm_hwm_bytes(self) -> int | None:
        """The child's peak RSS so far (Linux ``/proc/PID/status`` VmHWM), while it runs."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def alive(self) -> bool:
        """Whether the child still runs (if it has ended, it is reaped here and its rusage kept)."""
        if self.returncode is not None:
            return False
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self._reaped(status, usage)
        return False

    def _reaped(self, status: int, usage: Any) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # reaped here; keep Popen from waiting again
        self.peak_rss_bytes = maxrss_bytes(usage.ru_maxrss)
        self.seconds = round(time.perf_counter() - self.t0, 2)

    def wait(self, timeout: float = 600, terminate: bool = False) -> dict[str, Any]:
        """Wait for the child (send SIGTERM first when ``terminate``); kill it after ``timeout`` s."""
        import signal
        import threading

        if self.returncode is not None:
            return self.result()
        if terminate:
            self.proc.send_signal(signal.SIGTERM)
        timer = threading.Timer(timeout, lambda: os.kill(self.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(self.pid, 0)
        finally:
            timer.cancel()
        self._reaped(status, usage)
        return self.result()

    def output(self) -> tuple[str, str]:
        out = []
        for f in (self._out, self._err):
            f.flush()
            f.seek(0)
            out.append(f.read())
        return out[0], out[1]

    def result(self) -> dict[str, Any]:
        stdout, stderr = self.output()
        return {"returncode": self.returncode, "seconds": self.seconds, "peak_rss_bytes": self.peak_rss_bytes,
                "stdout": stdout, "stderr_tail": stderr[-3000:]}


def run_child(argv: Sequence[str], *, timeout: float = 600, env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run a command to completion; returns exit code, seconds, its own peak RSS (bytes), stdout, stderr tail."""
    return Child(argv, env=env, cwd=cwd).wait(timeout)


def maxrss_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` is KiB on Linux, bytes on macOS."""
    return int(ru_maxrss) if sys.platform == "darwin" else int(ru_maxrss) * 1024


def self_peak_rss_bytes() -> int:
    return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / 2**20, 1)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
