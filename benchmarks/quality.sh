#!/usr/bin/env bash
# The quality benchmark as run for BENCHMARKS.md on a 2-core CPU machine (see BENCHMARKS.md for the
# figures). A trimmed version of the full grid, in stages, so that each stage's results land
# before the next starts; every command is resumable (finished runs are reused).
# One deviation for all trained methods alike: stage 1 embeds 300 documents per task with the strong
# encoder instead of the reference's 1000 (alignment.docs_per_task=300): MPNet embeds ~50 abstracts a
# minute on this machine.
set -euo pipefail
SUITE=${SUITE:-../shared/data}
OUT=${OUT:-results}
COMMON=(--suite "$SUITE" --out "$OUT" --query-encoder sentence-transformers/all-mpnet-base-v2
        --document-encoder sentence-transformers/all-MiniLM-L6-v2 --set alignment.docs_per_task=300
        --skip-query-baseline-for vaswani cranfield cisi)
# 1. r = 0.2, in-domain, 3 seeds: the baselines, the paper's methods, ours; the ridge-init variant at 1 seed.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.2 --seeds 3 \
    --methods doc query era_recommended era_reference label_only label_only_fair alignment_only
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.2 --seeds 1 --methods era_ridge_init
# 2. the other label ratios: ours against the cheap index, 1 seed.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.05 0.1 0.4 --seeds 1 --methods doc era_recommended
# 3. leave-one-collection-out at r = 0.2, 1 seed.
era-hf benchmark "${COMMON[@]}" --protocols leave_one_out --loo-ratio 0.2 --seeds 1 --methods doc era_recommended
# 4. The report (tables, significance, plots) from the result files.
era-hf benchmark --report-only --out "$OUT" --report BENCHMARKS.md
