"""Encode corpora with the strong query encoder on a borrowed GPU machine, then import them into the cache.

The query-model baseline (the query encoder on both sides) and stage-1 alignment read the query
encoder's embeddings of whole corpora (``EncoderPair.corpus(task, side="query")``). On this 2-core
CPU all-mpnet-base-v2 manages ~50 documents a minute under load, so vaswani (11,429 documents)
would take hours; a GPU takes seconds. The texts and the encoding code are the same (era_hf's
``TextEncoder``), so the cache entries are the ones a CPU run would write, up to float rounding
(``encode`` reports the largest difference on a corpus that is already cached here).

Three steps::

    python benchmarks/encode_on_device.py export --suite ../shared/data --out .xfer    # here
    python benchmarks/encode_on_device.py encode --model-dir MPNET_DIR --texts .xfer/texts.json \\
        --out $OUT                                                                        # on the GPU machine
    python benchmarks/encode_on_device.py import --texts .xfer/texts.json --arrays DIR    # here
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ENCODER = "sentence-transformers/all-mpnet-base-v2"
PARTS_BYTES = 15 * 2**20  # returned files are limited to 16 MiB each


def _pair(encoder: str, max_length: int):
    from era_hf.task_embeddings import EncoderPair

    return EncoderPair(encoder, encoder, document_max_length=max_length)


def export(suite: Path, out: Path, encoder: str, max_length: int) -> None:
    from era_hf.tasks import load_task

    pair = _pair(encoder, max_length)
    record = {"encoder": encoder, "fingerprint": pair.query_fingerprint(max_length), "tasks": {}}
    for path in sorted(p for p in suite.iterdir() if (p / "corpus.jsonl").is_file()):
        task = load_task(str(path))
        texts = task.document_texts()
        cached = pair.cache.contains(record["fingerprint"], texts)
        record["tasks"][task.name] = {"texts": texts, "cached_here": cached}
        print(f"{task.name}: {len(texts)} documents, {'already cached' if cached else 'to encode'}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "texts.json").write_text(json.dumps(record))


def encode(model_dir: str, texts_file: Path, out: Path, batch_size: int) -> None:
    import torch

    from era_hf.encoders import TextEncoder

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as on the CPU
    record = json.loads(texts_file.read_text())
    fp = record["fingerprint"]
    enc = TextEncoder.from_pretrained(model_dir, pooling=fp["pooling"], normalize=fp["normalize"],
                                      max_length=fp["max_length"])
    enc.model.to("cuda" if torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in record["tasks"].items():
        array = enc.encode(entry["texts"], batch_size=batch_size, show_progress_bar=False).astype(np.float32)
        rows_per_part = max(1, PARTS_BYTES // (array.shape[1] * 4))
        for i, start in enumerate(range(0, len(array), rows_per_part)):
            np.save(out / f"{name}.{i}.npy", array[start:start + rows_per_part])
        print(f"{name}: {array.shape} on {enc.model.device}")


def import_arrays(texts_file: Path, arrays: Path) -> None:
    from era_hf.cache import EmbeddingCache

    record = json.loads(texts_file.read_text())
    cache, fp = EmbeddingCache(), record["fingerprint"]
    for name, entry in record["tasks"].items():
        parts = sorted(arrays.glob(f"{name}.*.npy"), key=lambda p: int(p.name.split(".")[-2]))
        array = np.concatenate([np.load(p, allow_pickle=False) for p in parts])
        if len(array) != len(entry["texts"]):
            sys.exit(f"{name}: {len(array)} rows for {len(entry['texts'])} texts")
        here = cache.lookup(fp, entry["texts"])
        if here is not None:
            print(f"{name}: already cached here; max |imported - cached| = {float(np.abs(here - array).max()):.2e}")
            continue
        cache.store(fp, entry["texts"], array)
        print(f"{name}: stored {array.shape}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("export")
    p.add_argument("--suite", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--encoder", default=ENCODER)
    p.add_argument("--max-length", type=int, default=256)
    p = sub.add_parser("encode")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--texts", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p = sub.add_parser("import")
    p.add_argument("--texts", type=Path, required=True)
    p.add_argument("--arrays", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "export":
        export(args.suite, args.out, args.encoder, args.max_length)
    elif args.step == "encode":
        encode(args.model_dir, args.texts, args.out, args.batch_size)
    else:
        import_arrays(args.texts, args.arrays)


if __name__ == "__main__":
    main()
