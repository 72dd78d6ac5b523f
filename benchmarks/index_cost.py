"""Index cost: document encoding time and index size, light encoder (MiniLM, 384-d) vs strong one (MPNet, 768-d).

The same documents (the first ``--docs`` of cranfield, title + text, token limit 256 for both)
are encoded by ``DocumentEncoder.encode_documents`` (batch 32, no cache), interleaved over the
rounds, then indexed (``DocumentIndex.from_embeddings``, ``IndexFlatIP``) and saved; the size of
``index.faiss`` is read from disk. "Per 1000 documents" figures are plain arithmetic on the
measured ones (time x 1000 / n; bytes per vector x 1000 + the file header) and are labelled so.

    python benchmarks/index_cost.py            # -> results/speed/index_cost.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (MAX_LENGTH, MINILM, MPNET, Run, add_common_args, document_texts, interleaved,  # noqa: E402
                     log, paired_ratios, set_threads, setup_env, summary, token_length_stats)

ENCODERS = (("minilm", MINILM), ("mpnet", MPNET))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--docs", type=int, default=200, help="documents (default 200)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed rounds (default 2)")
    args = parser.parse_args(argv)
    setup_env()
    warnings.filterwarnings("ignore")
    from era_hf.encoders import DocumentEncoder
    from era_hf.index import INDEX_FILE, DocumentIndex

    run = Run("index_cost", args)
    threads = set_threads(args.threads)
    n_docs, repeats = (24, 1) if args.quick else (args.docs, args.repeats)
    ids, texts = document_texts("cranfield")
    ids, texts = ids[:n_docs], texts[:n_docs]
    encoders = {k: DocumentEncoder.from_pretrained(m, max_length=MAX_LENGTH) for k, m in ENCODERS}
    for enc in encoders.values():  # warm-up: a small batch (one-off allocations), not a full pass
        enc.encode_documents(texts[:8])
    embeddings = {}

    def job(key: str):
        def f() -> None:
            embeddings[key] = encoders[key].encode_documents(texts, batch_size=32, show_progress_bar=False)
        return f

    times = interleaved({k: job(k) for k in encoders}, repeats, warmup=0, log=log)
    out = {"threads": threads, "documents": n_docs, "source": "cranfield corpus, first documents (title + text)",
           "token_lengths": token_length_stats(encoders["minilm"].tokenizer, texts, MAX_LENGTH),
           "batch_size": 32, "max_length": MAX_LENGTH, "repeats": repeats, "encoders": {}}
    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        for key, model_id in ENCODERS:
            emb = embeddings[key]
            t0 = time.perf_counter()
            index = DocumentIndex.from_embeddings(emb, ids, texts, None, {"document_encoder": model_id}, "flat")
            build_s = time.perf_counter() - t0
            d = Path(tmp) / key
            index.save(d)
            size = (d / INDEX_FILE).stat().st_size
            dim = int(emb.shape[1])
            vectors = 4 * dim * n_docs
            med = summary(times[key], 3)
            out["encoders"][key] = {
                "model": model_id, "dim": dim,
                "encode_seconds": med,
                "docs_per_second": round(n_docs / med["median"], 2),
                "faiss_add_seconds": round(build_s, 4),
                "index_faiss_bytes": size,
                "index_dir_bytes": sum(p.stat().st_size for p in d.iterdir()),
                "float32_vector_bytes": vectors,
                "index_faiss_header_bytes": size - vectors,
                "arithmetic_per_1000_docs": {
                    "encode_seconds": round(med["median"] * 1000 / n_docs, 1),
                    "index_faiss_bytes": 4 * dim * 1000 + (size - vectors),
                },
            }
    out["ratio_mpnet_over_minilm_encode_seconds"] = paired_ratios(times["mpnet"], times["minilm"], 3)
    out["ratio_mpnet_over_minilm_index_bytes"] = round(out["encoders"]["mpnet"]["index_faiss_bytes"]
                                                       / out["encoders"]["minilm"]["index_faiss_bytes"], 4)
    run.results = out
    run.notes.append("arithmetic_per_1000_docs is extrapolated, not measured: median seconds x 1000 / documents; "
                     "bytes = 4 x dim x 1000 + the measured index.faiss header (a flat index stores raw float32).")
    run.write()
    for key in encoders:
        e = out["encoders"][key]
        log(f"{key}: {e['encode_seconds']['median']} s for {n_docs} docs, index.faiss {e['index_faiss_bytes']} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
