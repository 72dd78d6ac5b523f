#!/usr/bin/env bash
# The quality benchmark as run for BENCHMARKS.md on a 2-core CPU machine, in stages so that each stage's
# results land before the next starts; every `era-hf benchmark` command is resumable (finished runs are reused),
# the scripts of steps 6 and 7 run again.
# No deviation from the recipes' defaults: stage 1 embeds 1000 documents per task with the strong encoder, and the
# recommended recipe's distillation all of them. Its corpus embeddings (the `query` / `fusion` baselines, stage 1,
# the distillation) were computed once on a GPU with the same code (benchmarks/encode_on_device.py) and imported
# into the embedding cache; on a CPU they are computed on the first run (hours for vaswani's 11,429 documents with
# all-mpnet-base-v2).
# Seeds: 3 everywhere except the leave-one-out rows of the paper's recipe (1).
# Steps 1-9 ran while the recommended recipe searched densely (without --alignment-tasks); that row is rec+dense
# now, and era_recommended is the recipe in hybrid search (step 9c; the files were renamed, their notes say so).
set -euo pipefail
SUITE=${SUITE:-../shared/data}
OUT=${OUT:-results}
MPNET=sentence-transformers/all-mpnet-base-v2
MINILM=sentence-transformers/all-MiniLM-L6-v2
COMMON=(--suite "$SUITE" --out "$OUT" --query-encoder "$MPNET" --document-encoder "$MINILM")
OPTIONS=(ref+in_batch_negatives ref+all_positives ref+resample_negatives ref+early_stopping_ndcg10 ref+anchor_penalty)
# 1. r = 0.2, in-domain: the zero-shot baselines, the paper's methods, ours (the recommended recipe, with the teacher
#    weights stage1_selection.py preferred, before its BM25 term, before its distillation learning rate and before
#    its distilled stage 1, stage 1 alone, stage 2's earlier patience), each option of ours. All in dense search.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.2 --seeds 3 \
    --methods doc query fusion era_reference label_only alignment_only rec+dense rec+teacher_w2 rec_no_lexical \
    rec+distill_lr1e-3 rec_no_distill distill_only rec+patience5 label_only_fair era_ridge_init "${OPTIONS[@]}"
# 2. one adapter per index (per_task) at every ratio.
era-hf benchmark "${COMMON[@]}" --protocols per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+dense rec+teacher_w2 rec_no_lexical rec+distill_lr1e-3 rec_no_distill era_reference \
    label_only_fair
era-hf benchmark "${COMMON[@]}" --protocols per_task --label-ratios 0.2 --seeds 3 --methods distill_only
# 2a. stage 2 with the distillation loss as a second term, both protocols, every ratio.
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+distill_weight
# 2a'. the residual two-layer head (mlp) in place of the linear one, both protocols, every ratio.
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+mlp_head
# 2b. the clarity guard forced on where the labels are the index's own (r = 0.2).
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.2 --seeds 3 --methods rec+clarity_guard
# 2c. the one-standard-error rule for the score-map weight, both protocols, every ratio.
era-hf benchmark "${COMMON[@]}" --protocols per_task in_domain --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+one_se
# 2d. the trained correction shrunk toward the cheap baseline (one-standard-error rule): in_domain at every ratio,
#     per_task at r = 0.2.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 --methods rec+shrink
era-hf benchmark "${COMMON[@]}" --protocols per_task --label-ratios 0.2 --seeds 3 --methods rec+shrink
# 3. the other ratios, in-domain.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.05 0.1 0.4 --seeds 3 \
    --methods rec+dense rec+teacher_w2 rec_no_lexical rec+distill_lr1e-3 rec_no_distill era_reference \
    label_only label_only_fair
# 3b. each option of ours at the other ratios.
era-hf benchmark "${COMMON[@]}" --protocols in_domain --label-ratios 0.05 0.1 0.4 --seeds 3 --methods "${OPTIONS[@]}"
# 4. leave-one-collection-out at r = 0.2 (ours with stage 1 on the training collections or on the held-out index).
era-hf benchmark "${COMMON[@]}" --protocols leave_one_out --loo-ratio 0.2 --seeds 3 \
    --methods rec+dense rec+teacher_w2 rec_no_lexical rec+distill_lr1e-3 era_recommended_index rec_index+dense \
    rec_no_distill rec_index+distill rec_index+clarity_guard rec_index+shrink rec_index+no_guard rec+one_se \
    rec+shrink alignment_only distill_only label_only label_only_fair
era-hf benchmark "${COMMON[@]}" --protocols leave_one_out --loo-ratio 0.2 --seed-list 0 --methods era_reference
# 5. MiniLM -> MiniLM: ERA as pure query-side adaptation (the paper's same-model row), r = 0.2.
era-hf benchmark --suite "$SUITE" --out "$OUT" --query-encoder "$MINILM" --document-encoder "$MINILM" \
    --protocols in_domain per_task --label-ratios 0.2 --seeds 3 --methods doc era_reference rec+dense era_recommended \
    rec+teacher_w2 rec_no_lexical rec+distill_lr1e-3 rec_no_distill
# 6. How far the head gets by imitating the query encoder on medline, where that encoder is far ahead of the
#    cheap one (test queries distilled on too: the most favourable setting; results/ceiling/, a report section).
#    Its first two lines were run while the recipe's distillation learning rate was 1e-3, hence --lr 1e-3; the
#    others run at the recipe's rate, the last one with the two-layer head.
python benchmarks/strong_ceiling.py --task "$SUITE/medline" --lr 1e-3 --out "$OUT/ceiling/medline.json"
python benchmarks/strong_ceiling.py --task "$SUITE/medline" --lr 1e-3 --weights 100 --steps 5000 --seeds 0 \
    --out "$OUT/ceiling/medline_5000_steps.json"
python benchmarks/strong_ceiling.py --task "$SUITE/medline" --out "$OUT/ceiling/medline_lr3e-4.json"
python benchmarks/strong_ceiling.py --task "$SUITE/medline" --head mlp --weights 100 \
    --out "$OUT/ceiling/medline_mlp_head.json"
# 7. A query log without judgments: half of each collection's test queries appended as unjudged queries, the
#    other half scored (results/query_log/, a report section).
python benchmarks/query_log.py --suite "$SUITE" --out "$OUT/query_log/in_domain.json"
python benchmarks/query_log.py --suite "$SUITE" --protocol per_task --out "$OUT/query_log/per_task.json"
# 8. Stage-1 settings compared on the judged non-test queries that stage 1 never read (the package's validation is
#    biased for them; results/stage1_selection/, a report section). W1 pins the recipe's teacher weights (1 and 1),
#    so that "recipe" stays the recipe these files measured if it changes; strong2_lexical2 is row rec+teacher_w2.
#    The lexical_weight files were written to a scratch folder first, as their command says, then moved.
W1="alignment.distill_teacher_weight=1,alignment.distill_lexical_weight=1"
for p in in_domain per_task; do
    python benchmarks/stage1_selection.py --suite "$SUITE" --protocols "$p" --out "$OUT/stage1_selection/$p.json" \
        --config "recipe:$W1" --config "no_lexical:$W1,alignment.distill_lexical_weight=0" \
        --config "lr1e-3:$W1,alignment.distill_lr=0.001"
    python benchmarks/stage1_selection.py --suite "$SUITE" --protocols "$p" \
        --out "$OUT/stage1_selection/lexical_weight_$p.json" --config "recipe:$W1" \
        --config "lexical0.5:$W1,alignment.distill_lexical_weight=0.5" \
        --config "lexical2:$W1,alignment.distill_lexical_weight=2"
    python benchmarks/stage1_selection.py --suite "$SUITE" --protocols "$p" \
        --out "$OUT/stage1_selection/steps_teacher_$p.json" --config "recipe:$W1" \
        --config "steps600:$W1,alignment.distill_steps=600" \
        --config "strong0.5:$W1,alignment.distill_teacher_weight=0.5" \
        --config "strong2:$W1,alignment.distill_teacher_weight=2"
    python benchmarks/stage1_selection.py --suite "$SUITE" --protocols "$p" \
        --out "$OUT/stage1_selection/teacher_weight_$p.json" --config "recipe:$W1" \
        --config "strong3:$W1,alignment.distill_teacher_weight=3" \
        --config "strong4:$W1,alignment.distill_teacher_weight=4" \
        --config "strong2_lexical2:alignment.distill_teacher_weight=2,alignment.distill_lexical_weight=2"
done
# 9. The same comparisons on other test splits (results/split_sensitivity/, a report section). Each protocol's split
#    seeds run as two parallel processes (one thread each), which the report merges; leave-one-out with one seed
#    (three for rec_index+shrink), also era_recommended_index (stage 1 distilled on the held-out collection),
#    rec_index+clarity_guard (its guarded weight pick instead), rec+shrink and rec_index+shrink. The files of
#    rec_index+clarity_guard, rec_index+dense and rec_index+shrink were made under those rows' earlier names
#    (era_recommended_index, rec_index+distill_lexical then era_recommended_index, rec_index+distill_lexical+shrink)
#    and renamed (their notes); era_recommended_index's (hybrid search) is in step 9c.
split_halves() {  # PROTOCOL NAME [more arguments]
    python benchmarks/split_sensitivity.py --suite "$SUITE" --protocols "$1" --split-seeds 42 0 1 --threads 1 \
        --out "$OUT/split_sensitivity/$2_a.json" "${@:3}" &
    local first=$!
    python benchmarks/split_sensitivity.py --suite "$SUITE" --protocols "$1" --split-seeds 2 3 4 --threads 1 \
        --out "$OUT/split_sensitivity/$2_b.json" "${@:3}"
    wait "$first"
}
split_halves in_domain in_domain --method rec+dense
split_halves per_task per_task --method rec+dense
split_halves leave_one_out leave_one_out --seeds 0 --method rec+dense
split_halves leave_one_out leave_one_out_clarity_guard --seeds 0 --method rec_index+clarity_guard
split_halves leave_one_out leave_one_out_index_dense --seeds 0 --method rec_index+dense
split_halves leave_one_out leave_one_out_shrink --seeds 0 --method rec+shrink
split_halves leave_one_out leave_one_out_index_shrink --seeds 0 1 2 --method rec_index+shrink
# 9b. Leave-one-out rows compared on the held-out collection's judged non-test queries, which training never reads
#     (results/transfer_selection/, a report section): how --alignment-tasks' default was chosen. Two parallel
#     processes, one thread each.
transfer() {  # METHOD...
    for m in "$@"; do
        python benchmarks/transfer_selection.py --suite "$SUITE" --method "$m" --threads 1 \
            --out "$OUT/transfer_selection/${m//+/_}.json"
    done
}
transfer rec_index+clarity_guard rec_index+dense rec_index+shrink rec_index+no_guard &
TRANSFER=$!
transfer rec+dense rec+shrink rec_index+distill
wait "$TRANSFER"
#     The same three choices on five other test splits (3 training seeds each).
transfer_split() {  # SPLIT_SEED METHOD...
    for m in "${@:2}"; do
        python benchmarks/transfer_selection.py --suite "$SUITE" --method "$m" --split-seed "$1" \
            --threads 1 --out "$OUT/transfer_selection/split$1/${m//+/_}.json"
    done
}
for s in 0 1 2 3 4; do
    transfer_split "$s" rec_index+dense rec_index+shrink &
    TRANSFER=$!
    transfer_split "$s" rec_index+clarity_guard
    wait "$TRANSFER"
done
# 9c. Hybrid search (2026-11-27): the cheap index with BM25 (baseline doc+lexical) and the recipe searching in hybrid
#     (BM25's weight picked on validation; run as rec+hybrid, era_recommended since step 9d chose it), every
#     protocol and ratio, then the transfer selection and six splits.
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods doc+lexical era_recommended
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.2 --seeds 3 \
    --methods rec_no_lexical+hybrid
#     The leave-one-out row with --alignment-tasks in hybrid was run as rec_index+hybrid, and became
#     era_recommended_index (the default of --alignment-tasks) by the transfer selection (files renamed, their notes).
era-hf benchmark "${COMMON[@]}" --protocols leave_one_out --loo-ratio 0.2 --seeds 3 \
    --methods era_recommended era_recommended_index
transfer era_recommended_index
python benchmarks/split_sensitivity.py --suite "$SUITE" --method era_recommended --protocols in_domain \
    --split-seeds 42 0 1 2 3 4 --threads 1 --out "$OUT/split_sensitivity/in_domain_hybrid.json"
python benchmarks/split_sensitivity.py --suite "$SUITE" --method era_recommended_index --protocols leave_one_out \
    --split-seeds 42 0 1 2 3 4 --seeds 0 --threads 1 --out "$OUT/split_sensitivity/leave_one_out_index.json"
# 9d. Dense or hybrid search for labelled collections (in_domain, per_task), compared on each collection's judged
#     queries that are neither test queries nor labels (results/label_selection/, a report section): how the
#     recipe's default became hybrid. One process per protocol, one thread each; the benchmark's split with 3
#     training seeds, then three other splits.
label_selection() {  # PROTOCOL
    for s in 42 0 1 2; do
        for m in rec+dense era_recommended; do
            if [ "$s" = 42 ]; then dir="$OUT/label_selection/$1"; split=(); else
                dir="$OUT/label_selection/$1/split$s"; split=(--split-seed "$s"); fi
            python benchmarks/transfer_selection.py --suite "$SUITE" --method "$m" --protocol "$1" "${split[@]}" \
                --threads 1 --out "$dir/${m//+/_}.json"
        done
    done
}
label_selection in_domain &
LABELS=$!
label_selection per_task
wait "$LABELS"
#     The recipe in hybrid on six splits per task and leave-one-out (without --alignment-tasks).
python benchmarks/split_sensitivity.py --suite "$SUITE" --method era_recommended --protocols per_task \
    --split-seeds 42 0 1 2 3 4 --threads 1 --out "$OUT/split_sensitivity/per_task_hybrid.json"
python benchmarks/split_sensitivity.py --suite "$SUITE" --method era_recommended --protocols leave_one_out \
    --split-seeds 42 0 1 2 3 4 --seeds 0 --threads 1 --out "$OUT/split_sensitivity/leave_one_out_hybrid.json"
# 9e. Re-ranking (2026-11-27, twenty-first session): era_recommended with its top 50 re-ranked by the query encoder
#     on both sides (row rec+rerank; K and the weight chosen by a research script on the queries training never
#     reads, docs/quality.md), every protocol and ratio, then the same selection protocol run by the package.
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+rerank
era-hf benchmark "${COMMON[@]}" --protocols leave_one_out --loo-ratio 0.2 --seeds 3 --methods rec+rerank
for p in in_domain per_task; do
    python benchmarks/transfer_selection.py --suite "$SUITE" --method rec+rerank --protocol "$p" --threads 1 \
        --out "$OUT/label_selection/$p/rec+rerank.json"
done
python benchmarks/split_sensitivity.py --suite "$SUITE" --method rec+rerank --protocols leave_one_out \
    --split-seeds 42 0 1 2 3 4 --seeds 0 --threads 1 --out "$OUT/split_sensitivity/leave_one_out_rerank.json"
# 9f. Re-ranking's weight calibrated per collection (2026-11-28, twenty-second session): rec+rerank with the weight
#     picked on each collection's validation queries (row rec+rerank_val; labelled protocols only), then the
#     selection protocol on the queries training never reads.
era-hf benchmark "${COMMON[@]}" --protocols in_domain per_task --label-ratios 0.05 0.1 0.2 0.4 --seeds 3 \
    --methods rec+rerank_val
for p in in_domain per_task; do
    python benchmarks/transfer_selection.py --suite "$SUITE" --method rec+rerank_val --protocol "$p" --threads 1 \
        --out "$OUT/label_selection/$p/rec+rerank_val.json"
done
for m in rec+rerank rec+rerank_val; do
    python benchmarks/split_sensitivity.py --suite "$SUITE" --method "$m" --protocols in_domain \
        --split-seeds 42 0 1 2 3 4 --seeds 0 --threads 1 --out "$OUT/split_sensitivity/in_domain_${m#rec+}.json"
done
# 10. The report (tables, significance, plots) from the result files.
era-hf benchmark --report-only --out "$OUT" --report BENCHMARKS.md
