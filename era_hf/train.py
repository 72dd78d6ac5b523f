"""Train an ERA adapter from the command line.

The same script runs as::

    era-hf train --tasks DIR ... --output OUT
    python -m era_hf.train --tasks DIR ... --output OUT
    accelerate launch [--multi_gpu] --num_processes N -m era_hf.train --tasks DIR ... --output OUT
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m era_hf.train ...   # CPU, gloo

Every hyper-parameter is a flag derived from the argument dataclasses
(:mod:`era_hf.training.arguments`): run-level fields as ``--label-ratio``, stage fields as
``--alignment.lr`` / ``--adaptation.epochs``. A flag that is not given keeps the value of the
recipe (``--recipe``, default ``reference`` = the paper's settings); booleans take
``--flag`` / ``--no-flag``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING, fields
from typing import Any, Sequence

from .errors import ERAError

#: Extra / different spellings of run-level flags.
FLAG_NAMES = {"output_dir": ["--output", "--output-dir"], "head": ["--head"], "tasks": ["--tasks"]}

EXAMPLES = """\
examples:
  era-hf train --tasks ../shared/data/adi --query-encoder sentence-transformers/all-mpnet-base-v2 \\
      --document-encoder sentence-transformers/all-MiniLM-L6-v2 --mode both --label-ratio 0.2 --output out/adi
  era-hf train --tasks ../shared/data --recipe ridge_init --output out/suite      # pooled suite directory
  era-hf train ... --alignment.epochs 10 --adaptation.lr 5e-5 --adaptation.in-batch-negatives
  era-hf train ... --output out/adi --resume                                          # continue after a crash
  era-hf train ... --output out/adi --overwrite                                       # replace the model there
  accelerate launch --multi_gpu --num_processes 2 -m era_hf.train --tasks ... --output out/ddp
"""


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _none_or(kind: Any):
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "off") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _float_or_auto(text: str) -> Any:
    return "auto" if text == "auto" else float(text)


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"rank\": 16}'")
    return value


def _add_field(group: argparse._ArgumentGroup, flags: list[str], f: Any, dest: str) -> None:
    meta = f.metadata
    kind = str(f.type).replace(" ", "")
    default = _default(f)
    shown = json.dumps(default) if isinstance(default, (dict, list, tuple)) else default
    help_text = meta.get("help", "")
    if meta.get("hidden"):
        help_text = argparse.SUPPRESS
    else:
        help_text = f"{help_text} (reference/default: {shown})"
    kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
    if "choices" in meta:
        kw["choices"] = list(meta["choices"])
    if kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
        kw.pop("choices", None)
    elif kind == "int":
        kw["type"] = int
        kw["metavar"] = "INT"
    elif kind == "float":
        kw["type"] = float
        kw["metavar"] = "FLOAT"
    elif kind == "int|None":
        kw["type"] = _none_or(int)
        kw["metavar"] = "INT|none"
    elif kind == "float|None":
        kw["type"] = _none_or(float)
        kw["metavar"] = "FLOAT|none"
    elif kind == "float|str":
        kw["type"] = _float_or_auto
        kw["metavar"] = "FLOAT|auto"
    elif kind == "float|str|None":
        kw["type"] = _none_or(_float_or_auto)
        kw["metavar"] = "FLOAT|auto|none"
    elif kind.startswith("tuple["):
        kw["type"] = float
        kw["nargs"] = "+"
        kw["metavar"] = "FLOAT"
    elif kind.startswith("list["):
        kw["nargs"] = "+"
        kw["metavar"] = "SPEC"
    elif kind.startswith("dict["):
        kw["type"] = _json_dict
        kw["metavar"] = "JSON"
    elif kind == "str|None":
        kw["type"] = _none_or(str) if "choices" not in meta else str
    if kind in ("str", "str|None") and "choices" not in meta:
        kw["metavar"] = "DIR" if f.name.endswith("_dir") else "STR"
    group.add_argument(*flags, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every training flag (derived from the argument dataclasses) to ``parser``."""
    from .training.arguments import AdaptationArguments, AlignmentArguments, TrainingArguments
    from .training.recipes import RECIPES

    run = parser.add_argument_group("run")
    for f in fields(TrainingArguments):
        if f.name in ("alignment", "adaptation"):
            continue
        flags = FLAG_NAMES.get(f.name, [f"--{f.name.replace('_', '-')}"])
        _add_field(run, flags, f, f.name)
        if f.name == "recipe":
            action = run._group_actions[-1]
            action.choices, action.metavar = list(RECIPES), None
    for phase, cls, title in (("alignment", AlignmentArguments, "stage 1: self-supervised alignment"),
                              ("adaptation", AdaptationArguments, "stage 2: supervised adaptation")):
        group = parser.add_argument_group(f"{title} (--{phase}.FIELD)")
        for f in fields(cls):
            _add_field(group, [f"--{phase}.{f.name.replace('_', '-')}"], f, f"{phase}.{f.name}")


def arguments_from_namespace(ns: argparse.Namespace) -> Any:
    """Recipe values, then the flags that were given."""
    from .training.arguments import TrainingArguments

    given = {k: v for k, v in vars(ns).items() if k not in ("func", "command")}
    recipe = given.pop("recipe", "reference")
    phases: dict[str, dict[str, Any]] = {"alignment": {}, "adaptation": {}}
    run: dict[str, Any] = {}
    for key, value in given.items():
        phase, dot, name = key.partition(".")
        if dot and phase in phases:
            phases[phase][name] = tuple(value) if isinstance(value, list) and name == "ridge_grid" else value
        elif key in {f.name for f in fields(TrainingArguments)}:
            run[key] = value
    args = TrainingArguments.from_recipe(recipe, alignment=phases["alignment"], adaptation=phases["adaptation"],
                                         **run)
    args.validate()
    return args


def _describe() -> str:
    from .training.recipes import describe_recipes

    return (__doc__ or "").split("\n\n", 1)[0] + "\n\nrecipes:\n" + "\n".join(
        "  " + line for line in describe_recipes().splitlines())


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``era-hf train``."""
    p = sub.add_parser("train", help="train an ERA adapter head (stage 1 alignment + stage 2 adaptation)",
                       description=_describe(), epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_train)


def run_train(ns: argparse.Namespace) -> int:
    from .training import TrainingStopped, train

    args = arguments_from_namespace(ns)
    if not args.tasks:
        raise ERAError("--tasks is required (task directories, a suite directory, hub ids or builtin:stdlib-code)")
    if not args.output_dir:
        raise ERAError("--output is required")
    try:
        out = train(args)
    except TrainingStopped as stop:
        print(f"{stop}; continue with --resume", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not per process
        print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .cli import ERAArgumentParser

    parser = ERAArgumentParser(prog="python -m era_hf.train", description=_describe(), epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import run_command

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run_command(run_train, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
