"""ERA training: stage 1 (alignment), stage 2 (adaptation), negatives, losses, Accelerate orchestration.

Public API::

    ERATrainer(model_or_pair, tasks, args).train() -> ERAModel
    train(args) -> Path                       # loads args.tasks, builds the EncoderPair, trains, saves
    TrainingArguments / AlignmentArguments / AdaptationArguments   # defaults = the paper's reference
    TrainingArguments.from_recipe(name, **overrides); RECIPES; register_recipe(Recipe(...))

Command line: ``era-hf train ...``, ``python -m era_hf.train ...`` or
``accelerate launch [--multi_gpu] --num_processes N -m era_hf.train ...`` (see ``era_hf/train.py``).

Modules: :mod:`.arguments`, :mod:`.recipes`, :mod:`.data` (tensors from tasks + cached
embeddings), :mod:`.negatives`, :mod:`.losses`, :mod:`.alignment` (stage 1), :mod:`.adaptation`
(stage 2), :mod:`.loop` (shared epoch loop), :mod:`.checkpoints`, :mod:`.trainer`.
"""

from __future__ import annotations

from pathlib import Path

from .arguments import AdaptationArguments, AlignmentArguments, TrainingArguments
from .checkpoints import CheckpointMismatch
from .loop import TrainingStopped
from .recipes import RECIPES, Recipe, get_recipe, register_recipe
from .trainer import ERATrainer


def train(args: TrainingArguments) -> Path:
    """Train from ``args`` alone (tasks and encoders named in it); returns the output directory."""
    ERATrainer(None, args.tasks, args).train()
    return Path(args.output_dir)


__all__ = ["AdaptationArguments", "AlignmentArguments", "CheckpointMismatch", "ERATrainer", "RECIPES", "Recipe",
           "TrainingArguments", "TrainingStopped", "get_recipe", "register_recipe", "train"]
