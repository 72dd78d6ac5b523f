"""Hugging Face Space: ERA search vs. the cheap baseline over a fixed document index.

All logic lives in ``era_hf.space``; this file only reads the settings from environment
variables (Space "Variables"), so the same code serves any model / index pair:

* ``ERA_MODEL``           ERA model repo id or directory        (default below)
* ``ERA_INDEX``           index dataset repo id or directory    (default below)
* ``ERA_MODEL_REVISION``  / ``ERA_INDEX_REVISION``: pin a commit (recommended)
* ``ERA_TASK``            optional task spec for the instruction and example queries
* ``ERA_MAX_BATCH_SIZE``  queries encoded in one forward pass (default 16)

The index is never rebuilt here: the corpus was embedded once by the document encoder.
If the model and index do not fit together, the page shows the error instead of crashing.
"""

from __future__ import annotations

import os

from era_hf.errors import ERAError
from era_hf.space import DEFAULT_INDEX, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MODEL, error_app, load_app

# Set these Space variables to the repos you pushed (`era-hf` push commands); the defaults are
# the quickstart's local outputs, for running this file from a checkout.
MODEL = os.environ.get("ERA_MODEL", DEFAULT_MODEL)
INDEX = os.environ.get("ERA_INDEX", DEFAULT_INDEX)


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def create_demo():
    try:
        return load_app(MODEL, INDEX, model_revision=os.environ.get("ERA_MODEL_REVISION") or None,
                        index_revision=os.environ.get("ERA_INDEX_REVISION") or None,
                        task=os.environ.get("ERA_TASK") or None,
                        max_batch_size=_int_env("ERA_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE))
    except ERAError as err:  # a clear page instead of a start-up traceback
        print(f"error: {err}", flush=True)
        return error_app(str(err))


demo = create_demo()

if __name__ == "__main__":
    # On Spaces, GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are set by the platform.
    demo.launch(ssr_mode=False)
