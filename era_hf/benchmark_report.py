"""BENCHMARKS.md and PNG plots from the result files of ``era-hf benchmark`` (:mod:`era_hf.benchmark`).

Every number in the report is computed here from the JSON files under the results directory (each
holds per-query values): tables of nDCG@10 and MAP@100 per task, per domain and macro (mean ± sample
std over training seeds), in-domain per label ratio and leave-one-out, and paired significance tests
of each ERA variant (mode ``both``) against ``label_only`` and the ``doc`` and ``doc+lexical`` baselines.

Significance (per protocol and ratio): each method's per-query nDCG@10 is first averaged over its
seeds; the paired differences are then tested over the shared test queries:

* the macro difference (mean over tasks of the per-task mean difference) with a 95% paired bootstrap
  CI (10,000 resamples of the test queries within each task, ``numpy.random.default_rng(0)``);
* a paired sign-flip randomization test of the same macro difference (10,000 resamples; two-sided);
* over the pooled queries: wins / ties / losses, an exact two-sided sign test and, when SciPy is
  installed, the Wilcoxon signed-rank test (zero differences dropped).

p-values are not adjusted for multiple comparisons.

Section hooks (:data:`SECTION_HOOKS`): when ``benchmarks/report_speed.py`` exists (next to the report, in
the current directory or in the repository root) and defines ``render_speed_section(results_dir) -> str``,
its output is included as the "Speed" section; likewise ``benchmarks/strong_ceiling.py``'s
``render_ceiling_section``, ``benchmarks/query_log.py``'s ``render_query_log_section`` and
``benchmarks/stage1_selection.py``'s ``render_stage1_selection_section``, ``benchmarks/split_sensitivity.py``'s
``render_split_sensitivity_section`` and ``benchmarks/transfer_selection.py``'s
``render_transfer_selection_section`` (empty when they have no results: no section).

Example:
    >>> from era_hf.benchmark_report import write_report
    >>> text = write_report("results", "BENCHMARKS.md")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .atomic import require_directory
from .benchmark import PROTOCOL_TITLES, PROTOCOLS
from .errors import ERAError

METRICS = (("nDCG@10", "ndcg@10"), ("MAP@100", "map@100"))
#: A hand-written file in the results directory, copied into the report (e.g. where embeddings were computed).
NOTES_FILE = "NOTES.md"
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_EPS = 1e-12


# ---------------------------------------------------------------------- loading
def load_results(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every benchmark result file under ``results_dir`` (other JSON files are ignored; a damaged result file is
    left out with a warning on stderr)."""
    from .benchmark import FORMAT, result_problem

    root = require_directory(results_dir, "results directory")
    out = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") for p in rel):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # a truncated result file, say: said, not silently dropped
            print(f"warning: {path} is unreadable ({err}); left out of the report", file=sys.stderr)
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            problem = result_problem(data)
            if problem:
                print(f"warning: {path} is damaged ({problem}); left out of the report", file=sys.stderr)
                continue
            data["_path"] = str(path)
            out.append(data)
    return out


class PairResults:
    """The result files of one encoder pair, indexed."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.encoders: dict[str, Any] | None = None
        self.baselines: dict[str, dict[str, Any]] = {}
        #: (protocol, method, ratio) -> result dicts (one per seed, and per held-out task for leave-one-out)
        self.trained: dict[tuple[str, str, float | None], list[dict[str, Any]]] = defaultdict(list)
        self.tasks: list[str] = []
        self.domains: dict[str, str] = {}
        self.task_info: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}

    def add(self, r: dict[str, Any]) -> None:
        if self.encoders is None:
            self.encoders = r["config"].get("encoders")
        name = r["method"]["name"]
        self.methods.setdefault(name, r["method"])
        if r["kind"] == "baseline":
            self.baselines[name] = r
        else:
            self.trained[(r["protocol"], name, r["label_ratio"])].append(r)
        for t, domain in (r.get("task_domains") or {}).items():
            if t not in self.domains:
                self.tasks.append(t)
                self.domains[t] = domain
        ev = r.get("evaluation") or {}
        for t, tr in (ev.get("tasks") or {}).items():
            if t not in self.domains:
                self.tasks.append(t)
                self.domains[t] = tr["domain"]
            info = self.task_info.setdefault(t, {})
            info.setdefault("n_documents", tr.get("n_documents"))
            info.setdefault("n_test", tr.get("n_queries"))
            split = tr.get("split") or {}
            if r["kind"] == "trained" and r["label_ratio"] is not None and r["protocol"] == "in_domain":
                info.setdefault("n_train", {})[r["label_ratio"]] = split.get("n_train")
                info.setdefault("n_val", split.get("n_val"))

    def ratios(self, protocol: str) -> list[float]:
        return sorted({r for (p, _, r) in self.trained if p == protocol and r is not None})

    def method_order(self) -> list[str]:
        from .benchmark import METHOD_NAMES

        known = [m for m in METHOD_NAMES if m in self.methods]
        return known + sorted(m for m in self.methods if m not in METHOD_NAMES)

    def files(self, protocol: str, method: str, ratio: float | None) -> list[dict[str, Any]]:
        """The method's result files at ``ratio`` (a method without labels: its ratio-free runs, which stand for every
        ratio)."""
        return self.trained.get((protocol, method, ratio)) or self.trained.get((protocol, method, None)) or []

    def rows(self, protocol: str, ratio: float | None) -> list[tuple[str, list[dict[str, Any]]]]:
        """(method, result files) of a table: baselines, then trained methods at ``ratio`` (ratio-free ones too)."""
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for m in self.method_order():
            if m in self.baselines:
                out.append((m, [self.baselines[m]]))
                continue
            files = self.files(protocol, m, ratio)
            if files:
                out.append((m, files))
        return out


def collect(results: Iterable[dict[str, Any]]) -> dict[str, PairResults]:
    pairs: dict[str, PairResults] = {}
    for r in sorted(results, key=lambda r: r.get("created", "")):
        pairs.setdefault(r["pair"], PairResults(r["pair"])).add(r)
    return pairs


# ---------------------------------------------------------------------- statistics
class Cell:
    """One method's values for a set of tasks: per seed per task, and the aggregates."""

    def __init__(self, files: Sequence[dict[str, Any]], tasks: Sequence[str], domains: Mapping[str, str],
                 metric: str) -> None:
        self.tasks = list(tasks)
        by_seed: dict[Any, dict[str, float]] = defaultdict(dict)
        for r in files:
            for t, tr in ((r.get("evaluation") or {}).get("tasks") or {}).items():
                if t in self.tasks and metric in tr["metrics"]:
                    by_seed[r.get("seed")][t] = float(tr["metrics"][metric])
        self.by_seed = dict(by_seed)
        self.not_measured = sorted({t for r in files for t in r.get("not_measured") or []})
        self.per_task = {t: [v[t] for v in self.by_seed.values() if t in v] for t in self.tasks}
        complete = [v for v in self.by_seed.values() if all(t in v for t in self.tasks)]
        self.macro = [float(np.mean([v[t] for t in self.tasks])) for v in complete]
        self.per_domain: dict[str, list[float]] = {}
        for d in sorted(set(domains[t] for t in self.tasks)):
            dt = [t for t in self.tasks if domains[t] == d]
            self.per_domain[d] = [float(np.mean([v[t] for t in dt])) for v in self.by_seed.values()
                                  if all(t in v for t in dt)]

    @property
    def n_seeds(self) -> int:
        return len(self.by_seed)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def fmt_values(values: Sequence[float], missing: str = "—") -> str:
    if not values:
        return missing
    m, s = mean_std(values)
    return f"{m:.4f}" if s is None else f"{m:.4f} ± {s:.4f}"


def per_query_means(files: Sequence[dict[str, Any]], metric: str = "ndcg@10") -> dict[str, dict[str, float]]:
    """task -> {query id: the metric averaged over the seeds (files) that scored it}."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in files:
        for t, tr in ((r.get("evaluation") or {}).get("tasks") or {}).items():
            pq = tr.get("per_query") or {}
            for qid, v in zip(pq.get("query_ids", []), pq.get(metric, [])):
                sums[t][qid].append(float(v))
    return {t: {q: float(np.mean(v)) for q, v in qs.items()} for t, qs in sums.items()}


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2.0 ** n)


def paired_test(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
                n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Paired comparison of A and B over the same queries, per task (``{task: values in the same query order}``).

    Returns the macro difference (A - B; mean over tasks of the per-task mean difference), its 95% paired
    bootstrap CI (queries resampled within each task), the two-sided sign-flip randomization p-value of the
    macro difference, wins/ties/losses over the pooled queries, the exact sign-test p-value and the
    Wilcoxon signed-rank p-value (None without SciPy).

    Example:
        >>> r = paired_test({"t": [0.5, 0.6, 0.7, 0.9]}, {"t": [0.4, 0.6, 0.5, 0.6]}, n_resamples=1000)
        >>> round(r["delta"], 4), (r["wins"], r["ties"], r["losses"])
        (0.15, (3, 1, 0))
    """
    tasks = [t for t in a if t in b]
    if not tasks:
        raise ERAError("paired_test: no task in common")
    diffs = []
    for t in tasks:
        x, y = np.asarray(a[t], dtype=np.float64), np.asarray(b[t], dtype=np.float64)
        if x.shape != y.shape or x.size == 0:
            raise ERAError(f"paired_test: task {t!r} has {x.size} vs {y.size} values")
        diffs.append(x - y)
    observed = float(np.mean([d.mean() for d in diffs]))
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_resamples)
    flip = np.zeros(n_resamples)
    for d in diffs:
        n = d.size
        boot += d[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
        flip += ((rng.integers(0, 2, size=(n_resamples, n)) * 2 - 1) * d).mean(axis=1)
    boot /= len(diffs)
    flip /= len(diffs)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p_flip = float((1 + np.sum(np.abs(flip) >= abs(observed) - _EPS)) / (n_resamples + 1))
    pooled = np.concatenate(diffs)
    wins, losses = int((pooled > _EPS).sum()), int((pooled < -_EPS).sum())
    ties = int(pooled.size - wins - losses)
    p_wilcoxon: float | None
    try:
        from scipy.stats import wilcoxon
    except ImportError:  # SciPy is optional
        p_wilcoxon = None
    else:
        nonzero = pooled[np.abs(pooled) > _EPS]
        if nonzero.size == 0:
            p_wilcoxon = 1.0
        else:
            p_wilcoxon = float(wilcoxon(nonzero).pvalue)
    return {"delta": observed, "ci_low": float(lo), "ci_high": float(hi), "p_signflip": p_flip,
            "p_sign": sign_test(wins, losses), "p_wilcoxon": p_wilcoxon, "wins": wins, "ties": ties,
            "losses": losses, "n_queries": int(pooled.size), "n_tasks": len(tasks), "tasks": tasks}


def compare(files_a: Sequence[dict[str, Any]], files_b: Sequence[dict[str, Any]], tasks: Sequence[str],
            metric: str = "ndcg@10") -> dict[str, Any] | None:
    """:func:`paired_test` of two methods' per-query values (averaged over seeds) on their common tasks and
    queries; None when they share no query."""
    qa, qb = per_query_means(files_a, metric), per_query_means(files_b, metric)
    a: dict[str, list[float]] = {}
    b: dict[str, list[float]] = {}
    for t in tasks:
        if t in qa and t in qb:
            common = [q for q in qa[t] if q in qb[t]]
            if common:
                a[t] = [qa[t][q] for q in common]
                b[t] = [qb[t][q] for q in common]
    if not a:
        return None
    return paired_test(a, b)


def significance(pr: PairResults) -> list[dict[str, Any]]:
    """Each ERA variant (mode both) vs label_only (same protocol and ratio) and vs the doc and doc+lexical
    baselines."""
    rows = []
    for protocol in PROTOCOLS:
        for ratio in pr.ratios(protocol):
            for method in pr.method_order():
                files = pr.trained.get((protocol, method, ratio))
                if not files or pr.methods[method].get("mode") != "both":
                    continue
                comparators = []
                if pr.trained.get((protocol, "label_only", ratio)):
                    comparators.append(("label_only", pr.trained[(protocol, "label_only", ratio)]))
                for baseline in ("doc", "doc+lexical"):  # the cheap index as is, and in hybrid with BM25
                    if baseline in pr.baselines:
                        comparators.append((baseline, [pr.baselines[baseline]]))
                for name, other in comparators:
                    res = compare(files, other, pr.tasks)
                    if res is not None:
                        rows.append({"protocol": protocol, "ratio": ratio, "method": method, "versus": name,
                                     "n_seeds": len({f.get("seed") for f in files}), **res})
    return rows


# ---------------------------------------------------------------------- markdown
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_left: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if i < align_left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _seeds_label(cell: Cell, files: Sequence[dict[str, Any]]) -> str:
    if files and files[0]["kind"] == "baseline":
        return "–"
    return str(cell.n_seeds)


def _result_table(pr: PairResults, protocol: str, ratio: float | None, metric: str) -> tuple[str, list[str]]:
    notes: list[str] = []
    header = ["method", "seeds", *pr.tasks, "**macro**"]
    rows = []
    for method, files in pr.rows(protocol, ratio):
        cell = Cell(files, pr.tasks, pr.domains, metric)
        cells = []
        for t in pr.tasks:
            cells.append("not measured" if t in cell.not_measured else fmt_values(cell.per_task[t]))
        if cell.macro:
            macro = f"**{fmt_values(cell.macro)}**"
        elif cell.not_measured:
            partial = [t for t in pr.tasks if cell.per_task[t]]
            macro = "not measured"
            if partial:
                vals = [v for v in cell.by_seed.values()]
                pm = [float(np.mean([v[t] for t in partial])) for v in vals if all(t in v for t in partial)]
                notes.append(f"`{method}`: not measured on {', '.join(cell.not_measured)}; its macro over the "
                             f"{len(partial)} measured task(s) is {fmt_values(pm)} (not comparable to the others).")
        else:
            macro = "incomplete"
        name = f"`{method}`" + (" (no labels)" if files[0]["kind"] == "trained" and files[0]["label_ratio"] is None
                                else "")
        rows.append([name, _seeds_label(cell, files), *cells, macro])
    return _md_table(header, rows), notes


def _domain_table(pr: PairResults, protocol: str, ratio: float | None, metric: str) -> str:
    domains = sorted(set(pr.domains.values()))
    rows = []
    for method, files in pr.rows(protocol, ratio):
        cell = Cell(files, pr.tasks, pr.domains, metric)
        rows.append([f"`{method}`", _seeds_label(cell, files),
                     *[fmt_values(cell.per_domain.get(d, [])) for d in domains]])
    return _md_table(["method", "seeds", *domains], rows)


def _p(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1e}" if x < 1e-3 else f"{x:.3f}"


def _significance_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["protocol", "r", "ERA method", "vs", "seeds", "queries", "Δ macro nDCG@10", "95% bootstrap CI",
              "p (sign-flip)", "W / T / L", "p (sign)", "p (Wilcoxon)"]
    body = [[r["protocol"], f"{r['ratio']:g}", f"`{r['method']}`", f"`{r['versus']}`", str(r["n_seeds"]),
             str(r["n_queries"]), f"{r['delta']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
             ("≤ " if r["p_signflip"] <= 1.0 / (N_RESAMPLES + 1) + _EPS else "") + _p(r["p_signflip"]),
             f"{r['wins']} / {r['ties']} / {r['losses']}", _p(r["p_sign"]),
             _p(r["p_wilcoxon"])] for r in rows]
    return _md_table(header, body, align_left=4)


#: Optional sections rendered by scripts beside the report: (file in benchmarks/, function(results_dir) -> str).
SECTION_HOOKS = (("report_speed.py", "render_speed_section"), ("strong_ceiling.py", "render_ceiling_section"),
                 ("query_log.py", "render_query_log_section"),
                 ("stage1_selection.py", "render_stage1_selection_section"),
                 ("split_sensitivity.py", "render_split_sensitivity_section"),
                 ("transfer_selection.py", "render_transfer_selection_section"),
                 ("transfer_selection.py", "render_label_selection_section"))


def _hook_section(results_dir: Path, report_path: Path, filename: str, function: str) -> str | None:
    candidates = [report_path.parent / "benchmarks" / filename, Path.cwd() / "benchmarks" / filename,
                  Path(__file__).resolve().parents[1] / "benchmarks" / filename]
    for path in candidates:
        if path.is_file():
            try:
                spec = importlib.util.spec_from_file_location(f"_era_report_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                assert spec.loader is not None
                spec.loader.exec_module(module)
                return str(getattr(module, function)(str(results_dir))).strip() or None
            except Exception as err:  # an optional section: report the failure, keep the rest
                return f"## {path.stem}\n\n(`{path}` failed: {type(err).__name__}: {err})"
    return None


def _pair_title(pr: PairResults) -> str:
    enc = pr.encoders or {}
    q = enc.get("query_encoder", {})
    d = enc.get("document_encoder", {})

    def one(e: Mapping[str, Any]) -> str:
        rev = e.get("revision")
        return f"`{e.get('model_id')}`" + (f" @ `{str(rev)[:12]}`" if rev else "")

    return f"{one(q)} → {one(d)}"


# ---------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: never touches the global backend

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _color(i: int, n: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab10" if n <= 10 else "tab20"](i % (10 if n <= 10 else 20))


def _save(fig: Any, path: Path) -> None:
    from .atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_ratio_curve(pr: PairResults, path: Path) -> bool:
    """Macro nDCG@10 vs label ratio (in-domain), one line per trained method; baselines as horizontal lines."""
    ratios = pr.ratios("in_domain")
    if not ratios:
        return False
    fig = _figure(8, 5)
    ax = fig.subplots()
    curves = [m for m in pr.method_order() if any(("in_domain", m, r) in pr.trained for r in ratios)]
    for method in pr.method_order():
        if method in pr.baselines:
            cell = Cell([pr.baselines[method]], pr.tasks, pr.domains, "ndcg@10")
            if cell.macro:
                ax.axhline(cell.macro[0], linestyle="--", linewidth=1, color="black" if method == "doc" else "grey",
                           label=f"{method} (zero-shot)")
            continue
        if pr.trained.get(("in_domain", method, None)):
            cell = Cell(pr.trained[("in_domain", method, None)], pr.tasks, pr.domains, "ndcg@10")
            if cell.macro:
                ax.axhline(mean_std(cell.macro)[0], linestyle=":", linewidth=1, color="tab:brown",
                           label=f"{method} (no labels)")
            continue
        xs, ys, es = [], [], []
        for r in ratios:
            files = pr.trained.get(("in_domain", method, r))
            if files:
                cell = Cell(files, pr.tasks, pr.domains, "ndcg@10")
                if cell.macro:
                    m, s = mean_std(cell.macro)
                    xs.append(r)
                    ys.append(m)
                    es.append(s or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method,
                        color=_color(curves.index(method), len(curves)),
                        linewidth=2 if method.startswith("era_") else 1)
    ax.set_xscale("log")
    ax.set_xticks(ratios)
    ax.set_xticklabels([f"{r:g}" for r in ratios])
    ax.set_xlabel("label ratio r (log scale)")
    ax.set_ylabel("macro nDCG@10 (mean ± std over seeds)")
    ax.set_title(f"in-domain: {pr.slug}")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def plot_domain_bars(pr: PairResults, ratio: float, path: Path) -> bool:
    """Per-domain nDCG@10 at one ratio (in-domain), grouped bars per method."""
    rows = pr.rows("in_domain", ratio)
    if not rows:
        return False
    domains = sorted(set(pr.domains.values()))
    width = 0.8 / max(1, len(rows))
    fig = _figure(max(8, 1.2 * len(domains) * max(1, len(rows)) * 0.35), 5)
    ax = fig.subplots()
    x = np.arange(len(domains))
    for i, (method, files) in enumerate(rows):
        cell = Cell(files, pr.tasks, pr.domains, "ndcg@10")
        means = [mean_std(cell.per_domain[d])[0] if cell.per_domain.get(d) else np.nan for d in domains]
        stds = [(mean_std(cell.per_domain[d])[1] or 0.0) if cell.per_domain.get(d) else 0.0 for d in domains]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=method,
               color=_color(i, len(rows)))
    ax.set_xticks(x)
    ax.set_xticklabels(["\n".join(textwrap.wrap(d, 22)) for d in domains], fontsize=8)
    ax.set_ylabel("nDCG@10 (mean ± std over seeds)")
    ax.set_title(f"per domain, in-domain r={ratio:g}: {pr.slug}")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return True


# ---------------------------------------------------------------------- the report
def _distinct(values: Iterable[Any]) -> list[tuple[Any, int]]:
    seen: dict[str, list[Any]] = {}
    for v in values:
        key = json.dumps(v, sort_keys=True, default=str)
        if key in seen:
            seen[key][1] += 1
        else:
            seen[key] = [v, 1]
    return [(v, n) for v, n in seen.values()]


def render_report(results_dir: str | os.PathLike, report_path: str | os.PathLike,
                  plots_dir: str | os.PathLike | None = None) -> str:
    """Build the Markdown text (and write the PNG plots) from the result files."""
    from .benchmark import METHOD_NAMES, method_description
    from .benchmark_goals import render_goals_section

    results_dir_arg, report_arg = os.fspath(results_dir), os.fspath(report_path)
    results_dir = Path(results_dir)
    report_path = Path(report_path)
    plots = Path(plots_dir) if plots_dir else results_dir / "plots"
    results = load_results(results_dir)
    if not results:
        raise ERAError(f"no benchmark result files under {str(results_dir)!r}")
    pairs = collect(results)

    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), report_path.resolve().parent).replace(os.sep, "/")

    trained_files = [r for r in results if r["kind"] == "trained"]
    shown_dir = str(results_dir_arg)
    regenerate = f"era-hf benchmark --report-only --out {shown_dir} --report {report_arg}"
    out: list[str] = ["# ERA benchmarks", ""]
    out.append(f"Generated by `era_hf/benchmark_report.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
               f"from {len(results)} result file(s) in `{shown_dir}` ({len(trained_files)} trained run(s), "
               f"{len(results) - len(trained_files)} zero-shot baseline(s)); every number below is computed from "
               "those files (each stores its per-query values). Regenerate with "
               f"`{regenerate}`.")
    out.append("")
    overrides = _distinct(r.get("global_overrides") or {} for r in trained_files)
    flagged = [(o, n) for o, n in overrides if o]
    if flagged:
        out.append("> **Warning: some runs override the recipes** (`--set` / `--quick`); their numbers are NOT "
                   "the recipes' settings:")
        for o, n in flagged:
            out.append(f"> - {n} run(s): `{json.dumps(o, sort_keys=True)}`")
        out.append("")

    # ------------------------------------------------------------ protocol
    out += ["## Protocol", ""]
    out += [
        "- Test queries: every task's fixed TEST split (judged queries shuffled with `random.Random(42)`, the last "
        "50%); the same for every method, ratio and seed (each result file stores its split). Validation = the 10% "
        "before them; train = the first r of the rest (nested prefixes).",
        "- Exact cosine search over the whole corpus, top 100. nDCG@10 (headline) and MAP@100 per task = mean over "
        "its test queries; macro = unweighted mean over tasks; per domain = mean over the domain's tasks.",
        "- Cells: mean ± sample std over training seeds (python / numpy / torch seeds 0..N-1); a single value when "
        "one seed (or a deterministic zero-shot baseline).",
        "- `in_domain`: one head trained on all tasks pooled, tested on each task. `per_task`: one head per task, "
        "trained on that task alone (its documents for stage 1, its train queries for stage 2) and tested on it: one "
        "adapter per fixed index, as users deploy ERA. `leave_one_out`: for each task T, "
        "a head trained on the tasks whose domain string differs from T's, tested on T. Domain strings are taken as "
        "given; where every task has its own domain string (as in this suite) this is leave-one-collection-out.",
        "- Methods without labels (`alignment_only`) do not depend on r: one run per seed, repeated in every ratio "
        "table.",
        "- Significance: per-query nDCG@10 averaged over seeds, paired over the shared test queries; the macro "
        f"difference with a 95% paired bootstrap CI ({N_RESAMPLES:,} resamples of queries within each task, "
        f"seed {BOOTSTRAP_SEED}) and a two-sided paired sign-flip randomization p-value ({N_RESAMPLES:,} resamples); "
        "wins / ties / losses, an exact sign test and the Wilcoxon signed-rank test over the pooled queries. "
        "Unadjusted for multiple comparisons.",
        "",
    ]
    # methods
    seen_methods: dict[str, dict[str, Any]] = {}
    for pr in pairs.values():
        for m, info in pr.methods.items():
            seen_methods.setdefault(m, info)
    order = [m for m in METHOD_NAMES if m in seen_methods] + sorted(m for m in seen_methods if m not in METHOD_NAMES)
    rows = []
    for m in order:
        info = seen_methods[m]
        over = ", ".join(f"`{k}={v}`" for k, v in (info.get("overrides") or {}).items())
        rows.append([f"`{m}`", info.get("recipe") or "–", info.get("mode") or "zero-shot", over or "–",
                     info.get("description") or method_description(m)])
    out += ["### Methods", "", _md_table(["method", "recipe", "mode", "overrides", "description"], rows, 5), ""]
    missing = [m for m in METHOD_NAMES if m not in seen_methods]
    if missing:
        out += [f"Methods with no result file: {', '.join(f'`{m}`' for m in missing)}.", ""]

    # ------------------------------------------------------------ per pair
    for pr in pairs.values():
        out += [f"## {_pair_title(pr)}", "", f"Results directory: `{rel(results_dir / pr.slug)}/`.", ""]
        task_rows = []
        ratios = pr.ratios("in_domain")
        for t in pr.tasks:
            info = pr.task_info.get(t, {})
            n_train = info.get("n_train", {})
            task_rows.append([t, pr.domains[t], str(info.get("n_documents", "?")), str(info.get("n_test", "?")),
                              str(info.get("n_val", "?")),
                              ", ".join(f"{n_train[r]} @ {r:g}" for r in ratios if r in n_train) or "–"])
        out += [_md_table(["task", "domain", "documents", "test queries", "val queries", "train queries @ r"],
                          task_rows, 2), ""]
        if "query" in pr.baselines and pr.baselines["query"].get("not_measured"):
            out += [f"The `query` baseline was **not measured** on {', '.join(pr.baselines['query']['not_measured'])}"
                    " (`--skip-query-baseline-for`: that corpus was not re-encoded with the query encoder).", ""]
        many_per_domain = len(set(pr.domains.values())) < len(pr.tasks)
        if not pr.trained:
            for label, metric in METRICS:
                table, notes = _result_table(pr, "in_domain", None, metric)
                out += [f"### Zero-shot baselines: {label}", "", table, ""]
                out += [f"- {n}" for n in notes] + ([""] if notes else [])
        for protocol in PROTOCOLS:
            p_ratios = pr.ratios(protocol)
            if not p_ratios and not any(k[0] == protocol for k in pr.trained):
                continue
            for ratio in p_ratios or [None]:
                title = PROTOCOL_TITLES[protocol]
                for label, metric in METRICS:
                    table, notes = _result_table(pr, protocol, ratio, metric)
                    rtxt = f"r = {ratio:g}" if ratio is not None else "no labels"
                    out += [f"### {title}, {rtxt}: {label}", "", table, ""]
                    out += [f"- {n}" for n in notes] + ([""] if notes else [])
                if many_per_domain:
                    out += [f"### {title}, {rtxt}: nDCG@10 per domain", "",
                            _domain_table(pr, protocol, ratio, "ndcg@10"), ""]
        if not many_per_domain:
            out += ["Every domain here has exactly one task, so per-domain values equal the per-task columns above "
                    "(see the per-domain plot).", ""]
        sig = significance(pr)
        if sig:
            out += ["### Significance: ERA variants vs `label_only` and vs the `doc` and `doc+lexical` baselines", "",
                    "Δ = method − comparator (positive: the ERA variant is better).", "", _significance_table(sig), ""]
        goals = render_goals_section(pr)
        if goals:
            out += [goals, ""]
        # plots
        made = []
        curve = plots / f"ndcg10_vs_ratio__{pr.slug}.png"
        if plot_ratio_curve(pr, curve):
            made.append(("macro nDCG@10 vs label ratio (in-domain)", curve))
        if ratios:
            r_bar = min(ratios, key=lambda r: (abs(r - 0.2), r))
            bars = plots / f"per_domain_r{r_bar:g}__{pr.slug}.png"
            if plot_domain_bars(pr, r_bar, bars):
                made.append((f"nDCG@10 per domain at r = {r_bar:g} (in-domain)", bars))
        if made:
            out += ["### Plots", ""] + [f"![{title}]({rel(p)})\n" for title, p in made]

    # ------------------------------------------------------------ speed, commands, environment
    for filename, function in SECTION_HOOKS:
        section = _hook_section(results_dir, report_path, filename, function)
        if section:
            out += [section, ""]
    notes = Path(results_dir) / NOTES_FILE
    if notes.is_file():  # how the results were produced, where the commands alone do not say it
        out += ["## Notes on these results", "", notes.read_text(encoding="utf-8").strip(), ""]
    out += ["## Commands", "", "The result files were produced by:", "", "```"]
    out += [c for c, _ in _distinct(r.get("command") for r in results if r.get("command"))]
    out += [regenerate, "```", ""]
    seconds = sum((r.get("seconds") or {}).get("total", 0.0) for r in results)
    out += ["## Environment", "", f"Wall-clock time recorded in the result files: {seconds / 60:.1f} min "
            f"({len(trained_files)} training runs and {len(results) - len(trained_files)} baseline evaluations, "
            "including evaluation and any encoding on embedding-cache misses).", ""]
    for env, n in _distinct(r.get("environment") for r in results if r.get("environment")):
        pk = env.get("packages", {})
        out.append(f"- {n} file(s): Python {env.get('python')} on {env.get('platform')}; "
                   f"{env.get('cpus_available')} of {env.get('cpu_count')} CPU cores available, "
                   f"torch threads {env.get('torch_threads')}, GPU: {env.get('cuda') or 'none'}; "
                   + ", ".join(f"{k} {v}" for k, v in pk.items() if v))
    dates = sorted(r.get("created", "") for r in results if r.get("created"))
    if dates:
        out += ["", f"Runs dated {dates[0]} to {dates[-1]} (UTC)."]
    return "\n".join(out).rstrip() + "\n"


def write_report(results_dir: str | os.PathLike, report_path: str | os.PathLike,
                 plots_dir: str | os.PathLike | None = None) -> str:
    """Write ``report_path`` (atomically) and the plots; returns the Markdown text."""
    from .atomic import atomic_write_text

    text = render_report(results_dir, report_path, plots_dir)
    atomic_write_text(report_path, text)
    return text
