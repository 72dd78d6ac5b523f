"""``era-hf demo``: the quickstart's main job on the embedded default pair."""

from __future__ import annotations

import argparse


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the quickstart: build an ERA model on the default pair, save, reload, search")
    p.add_argument("--output", default="runs/demo", help="where the model is written")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from . import ERAModel
    from .encoders import DocumentEncoder

    model = ERAModel.from_encoders()
    docs = ["Lift on a wing comes from the pressure difference between its upper and lower surfaces.",
            "Heparin prevents blood clots by activating antithrombin.",
            "Boundary layers become turbulent above a critical Reynolds number."]
    queries = ["why does an airfoil generate lift?", "which anticoagulant acts through antithrombin?"]
    doc_encoder = DocumentEncoder.from_pretrained(model.config.document_encoder)
    d = doc_encoder.encode_documents(docs)
    q = model.encode_queries(queries)
    model.save_pretrained(args.output)
    reloaded = type(model).from_pretrained(args.output)
    q2 = reloaded.encode_queries(queries)
    print(f"saved and reloaded {args.output}: max |diff| = {np.abs(q - q2).max():.2e}")
    print("cosine(query, doc) of the untrained adapter:")
    print(np.round(q @ d.T, 3))
    return 0
