"""Run the speed / memory benchmarks; each writes ``results/speed/<name>.json``.

    python benchmarks/speed.py --all                      # every benchmark, one after the other
    python benchmarks/speed.py encode_throughput index_cost --threads 1
    python benchmarks/speed.py --render                   # print the report section from the JSON files

Each benchmark runs as its own process (fresh memory, fresh thread settings); a failing one is
reported and the others still run (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import RESULTS_DIR  # noqa: E402

BENCHMARKS = ("encode_throughput", "train_cost", "query_latency", "index_cost", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--all", action="store_true", help="run every benchmark")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every benchmark")
    parser.add_argument("--quick", action="store_true", help="smoke run (fewer repeats; not for reporting)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--render", action="store_true", help="print render_speed_section(results-dir) at the end")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = list(BENCHMARKS) if args.all else list(args.names)
    if not names and not args.render:
        parser.error("name benchmarks to run, or pass --all (or --render)")
    failed = []
    for name in names:
        cmd = [sys.executable, os.path.join(HERE, f"{name}.py"), "--results-dir", args.results_dir]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        if args.quick:
            cmd.append("--quick")
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if rc != 0:
            failed.append(name)
    if args.render:
        from report_speed import render_speed_section

        print(render_speed_section(args.results_dir))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
