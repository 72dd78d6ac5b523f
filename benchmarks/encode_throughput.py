"""Encoding throughput: era_hf's TextEncoder vs sentence-transformers' ``SentenceTransformer.encode``.

Same model, same texts (documents and queries of cranfield, mixed lengths, shuffled), same batch
size (32), same token limit (256 for both: ST's own default is 256 for MiniLM, 384 for MPNet), same
torch threads, both L2-normalised. The embeddings are compared first (max abs difference), so the
two sides compute the same thing. Then the two encoders run interleaved (after that warm-up pass),
and the ratio era_hf / ST in texts per second is the median of the per-round ratios.

    python benchmarks/encode_throughput.py            # -> results/speed/encode_throughput.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (BATCH_SIZE, MAX_LENGTH, MINILM, MPNET, Run, add_common_args, interleaved,  # noqa: E402
                     log, mixed_texts, paired_ratios, set_threads, setup_env, summary, token_length_stats)

#: (key, model id, number of texts, timed rounds); MPNet is ~5-8x slower, so fewer texts. Sized so that the
#: whole script stays within a few minutes on 2 busy cores; raise with --n-texts on a quiet machine.
MODELS = (("minilm", MINILM, 200, 5), ("mpnet", MPNET, 64, 3))


def bench_model(model_id: str, n_texts: int, repeats: int) -> dict:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from era_hf.encoders import TextEncoder

    texts = mixed_texts(n_texts)
    era = TextEncoder.from_pretrained(model_id, max_length=MAX_LENGTH)
    st = SentenceTransformer(model_id, device="cpu")
    st_default_max = st.max_seq_length
    st.max_seq_length = MAX_LENGTH

    def run_era():
        return era.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)

    def run_st():
        return st.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False, convert_to_numpy=True,
                         normalize_embeddings=True)

    # Agreement check (also the warm-up pass of each side).
    e_era, e_st = run_era(), run_st()
    diff = np.abs(e_era - e_st)
    cos = (e_era * e_st).sum(1) / (np.linalg.norm(e_era, axis=1) * np.linalg.norm(e_st, axis=1))
    times = interleaved({"era_hf": run_era, "sentence_transformers": run_st}, repeats, warmup=0, log=log)
    # Diagnostic: era_hf's length pre-pass (tokenising every text once, untruncated, to sort by token count).
    prepass = []
    for _ in range(3):
        t0 = time.perf_counter()
        era.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        prepass.append(time.perf_counter() - t0)
    tps = {k: [n_texts / t for t in v] for k, v in times.items()}
    return {
        "model": model_id,
        "n_texts": n_texts,
        "texts": "cranfield documents (title + text) and queries, shuffled (seed 0), 25% queries",
        "token_lengths": token_length_stats(era.tokenizer, texts, MAX_LENGTH),
        "batch_size": BATCH_SIZE,
        "max_length": MAX_LENGTH,
        "st_default_max_seq_length": st_default_max,
        "pooling": era.pooling,
        "repeats": repeats,
        "agreement": {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                      "min_cosine": float(cos.min()), "shape": list(e_era.shape)},
        "seconds": {k: summary(v) for k, v in times.items()},
        "texts_per_second": {k: summary(v, 2) for k, v in tps.items()},
        # era_hf texts/s over ST texts/s in the same round = ST seconds / era_hf seconds
        "ratio_era_over_st": paired_ratios(times["sentence_transformers"], times["era_hf"]),
        "era_hf_length_prepass_seconds": summary(prepass),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], choices=[m[0] for m in MODELS])
    parser.add_argument("--n-texts", type=int, nargs="+", default=None, metavar="N",
                        help="texts per model, in --models order (default: " +
                             ", ".join(f"{k} {n}" for k, _, n, _ in MODELS) + ")")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per model (default: "
                        + ", ".join(f"{k} {r}" for k, _, _, r in MODELS) + ")")
    args = parser.parse_args(argv)
    setup_env()
    warnings.filterwarnings("ignore", message=r".*longer than max_length.*")
    run = Run("encode_throughput", args)
    run.results["threads"] = set_threads(args.threads)
    sizes = dict(zip(args.models, args.n_texts or []))
    for key, model_id, n, repeats in MODELS:
        if key not in args.models:
            continue
        n = sizes.get(key, n)
        repeats = args.repeats or repeats
        if args.quick:
            n, repeats = min(n, 64), 2
        log(f"{key}: {n} texts, {repeats} interleaved rounds")
        run.results[key] = bench_model(model_id, n, repeats)
        r = run.results[key]
        log(f"{key}: era_hf/ST = {r['ratio_era_over_st']['median']:.3f}  max|diff| = "
            f"{r['agreement']['max_abs_diff']:.2e}")
    run.notes.append("Timed: encode() calls only (models loaded and warmed up before); both sides sort by length "
                     "(era_hf by token count, ST by character count) and run under torch.inference_mode.")
    run.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
