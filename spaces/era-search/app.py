"""Hugging Face Space: ERA search vs. the cheap baseline over a fixed document index.

All logic lives in ``era_hf.space``; this file only reads the settings from environment
variables (Space "Variables"), so the same code serves any model / index pair:

* ``ERA_MODEL``           ERA model repo id or directory        (default below)
* ``ERA_INDEX``           index dataset repo id or directory    (default below)
* ``ERA_MODEL_REVISION``  / ``ERA_INDEX_REVISION``: pin a commit (recommended)
* ``ERA_TASK``            optional task spec for the instruction and example queries
* ``ERA_MAX_BATCH_SIZE``  queries encoded in one forward pass (default 16)
* ``ERA_RERANK_TOP_K``    re-rank ERA's first K results with the query encoder on both sides (off when unset;
  each candidate's text is embedded the first time it is one)
* ``ERA_RERANK_WEIGHT``   the query encoder's weight when re-ranking (default 1; needs ``ERA_RERANK_TOP_K``)

The index is never rebuilt here: the corpus was embedded once by the document encoder.
If the model and index do not fit together, or a variable is not a number, the page shows the error instead of
crashing.
"""

from __future__ import annotations

import os

from era_hf.errors import ERAError
from era_hf.rerank import rerank_from_arguments
from era_hf.space import DEFAULT_INDEX, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MODEL, error_app, load_app

# Set these Space variables to the repos you pushed (`era-hf` push commands); the defaults are
# the quickstart's local outputs, for running this file from a checkout.
MODEL = os.environ.get("ERA_MODEL", DEFAULT_MODEL)
INDEX = os.environ.get("ERA_INDEX", DEFAULT_INDEX)


def _number_env(name: str, kind: type, default=None):
    """The Space variable ``name`` as ``kind`` (int or float); ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ERAError(f"Space variable {name}={value!r} is not {'an integer' if kind is int else 'a number'}") \
            from None


def create_demo():
    try:
        rerank = rerank_from_arguments(_number_env("ERA_RERANK_TOP_K", int), _number_env("ERA_RERANK_WEIGHT", float),
                                       names=("ERA_RERANK_TOP_K", "ERA_RERANK_WEIGHT"))
        return load_app(MODEL, INDEX, model_revision=os.environ.get("ERA_MODEL_REVISION") or None,
                        index_revision=os.environ.get("ERA_INDEX_REVISION") or None,
                        task=os.environ.get("ERA_TASK") or None,
                        max_batch_size=_number_env("ERA_MAX_BATCH_SIZE", int, DEFAULT_MAX_BATCH_SIZE),
                        rerank=rerank)
    except ERAError as err:  # a clear page instead of a start-up traceback
        print(f"error: {err}", flush=True)
        return error_app(str(err))


demo = create_demo()

if __name__ == "__main__":
    # On Spaces, GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are set by the platform.
    demo.launch(ssr_mode=False)
