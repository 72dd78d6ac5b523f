"""Publishing to the Hugging Face Hub: ERA models (model repos) and document indexes (dataset repos).

Each push is ONE atomic commit (``HfApi.create_commit``): the files of the directory that make up the
model / index, a generated card (``README.md``), and the deletion of files of an earlier push that
are gone (e.g. a LoRA adapter that was dropped). A model push uploads ``config.json``, the head
safetensors, the remote-code ``*.py`` files that ``save_pretrained`` writes, the LoRA adapter folder
(if any), ``training_log.json``, ``loss_curves.png`` and ``eval_results.json`` when present — nothing
else from the directory (no checkpoints). Pushing again updates the repo in place (a new commit).

The token comes from the ``token`` argument, else ``HF_TOKEN``, else the stored login
(``hf auth login``). It is never printed, written to the card or logs, and scrubbed from every error
message. A failed push leaves the repo as it was (a repo created by the failing push is deleted).

Sub-commands (``register_cli``): ``era-hf push``, ``era-hf push-index``, ``era-hf card``,
``era-hf export-st``.

Example:
    >>> from era_hf.hub import push_model
    >>> result = push_model("runs/era", "me/era-mpnet-minilm", private=True)  # doctest: +SKIP
    >>> result.url  # doctest: +SKIP
    'https://huggingface.co/me/era-mpnet-minilm'
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .atomic import require_directory
from .errors import ERAError

MODEL_OPTIONAL = ("training_log.json", "loss_curves.png", "eval_results.json")
LORA_DIR = "query_encoder_lora"
INDEX_FILES = ("index.faiss", "documents.jsonl", "index_config.json")
#: Files a model push owns in the repo: a later push deletes those it no longer has.
MODEL_MANAGED = ("config.json", "*.py", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
                 f"{LORA_DIR}/*", *MODEL_OPTIONAL)
_TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{6,}\b")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


# ------------------------------------------------------------------------------------------ tokens
def resolve_token(token: str | None = None) -> str:
    """The token to push with: ``token``, else ``HF_TOKEN``, else the stored login; ERAError if none."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise ERAError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login` "
                       "(a token with write access)")
    return found


def scrub(text: str, token: str | None = None) -> str:
    """``text`` without the token (and anything that looks like a Hugging Face token)."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


def _check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id \
            or repo_id.endswith((".", "-", ".git")):
        raise ERAError(f"--repo-id must look like NAMESPACE/NAME (letters, digits, '.', '_', '-'), got {repo_id!r}")
    return repo_id


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _hub_error(err: BaseException, action: str, token: str | None, endpoint: str) -> ERAError:
    """One clear, token-free ERAError for a failed Hub call."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        msg = f"cannot {action}: HF_HUB_OFFLINE is set; unset it to push to the Hub"
    elif isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        server = (err.server_message or "").strip().splitlines()
        detail = f" ({server[0]})" if server else ""
        if status == 401:
            msg = (f"cannot {action}: the Hub at {endpoint} rejected the token (401 Unauthorized{detail}); "
                   "check --token, HF_TOKEN or `hf auth login`")
        elif status == 403:
            msg = (f"cannot {action}: the token has no write access there (403 Forbidden{detail}); "
                   "use a token with write permission for this namespace")
        elif status == 404:
            msg = f"cannot {action}: not found (404{detail})"
        else:
            msg = f"cannot {action}: the Hub answered {status}{detail or ': ' + _first_line(err)}"
    else:
        msg = f"cannot {action}: {type(err).__name__}: {_first_line(err)} (Hub endpoint {endpoint})"
    return ERAError(scrub(msg, token))


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


# ------------------------------------------------------------------------------------------ results
@dataclass
class PushResult:
    """What a push did."""

    repo_id: str
    repo_type: str
    url: str
    commit: str | None
    commit_url: str | None
    files: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    created: bool = False

    def summary(self) -> str:
        what = "dataset" if self.repo_type == "dataset" else "model"
        extra = f", removed {len(self.deleted)} stale file(s)" if self.deleted else ""
        commit = f" (commit {self.commit[:12]})" if self.commit else ""
        return f"pushed {len(self.files)} file(s) to {what} repo {self.url}{commit}{extra}"


# ------------------------------------------------------------------------------------------ the commit
def _push(repo_id: str, repo_type: str, files: Sequence[tuple[str | bytes, str]], managed: Callable[[str], bool],
          *, card: Any, private: bool, token: str | None, revision: str | None, commit_message: str,
          validate_on_hub: bool = True) -> PushResult:
    """Create the repo if needed and upload ``files`` (+ the card) in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    token = resolve_token(token)
    endpoint = constants.ENDPOINT
    api = HfApi(token=token)
    net = (HfHubHTTPError, *_network_errors())
    kind = "dataset " if repo_type == "dataset" else ""
    try:
        api.whoami()
    except net as err:
        raise _hub_error(err, f"push to {kind}repo {repo_id}", token, endpoint) from None
    if validate_on_hub and card is not None:
        try:
            card.validate(repo_type=repo_type)
        except ValueError as err:  # 400 from /api/validate-yaml
            raise ERAError(scrub(f"the Hub rejected the card's metadata: {_first_line(err)}", token)) from None
        except net as err:  # an endpoint without the validation route: local validation already passed
            warnings.warn(scrub(f"could not validate the card on the Hub ({_first_line(err)}); pushing anyway",
                                token), stacklevel=3)
    created = False
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=False)
        created = True
    except HfHubHTTPError as err:
        if err.response is None or err.response.status_code != 409:
            raise _hub_error(err, f"create {kind}repo {repo_id}", token, endpoint) from None
    except net as err:
        raise _hub_error(err, f"create {kind}repo {repo_id}", token, endpoint) from None
    try:
        if private and not created:
            api.update_repo_settings(repo_id, repo_type=repo_type, private=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        existing = [] if created else api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
        ops: list[Any] = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=src) for src, dest in files]
        if card is not None:
            ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
        uploading = {op.path_in_repo for op in ops}
        stale = sorted(p for p in existing if p not in uploading and managed(p))
        ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
        info = api.create_commit(repo_id, ops, repo_type=repo_type, revision=revision, commit_message=commit_message)
    except net as err:
        failure = _hub_error(err, f"push to {kind}repo {repo_id}", token, endpoint)
        if created:  # leave nothing half-made behind
            try:
                api.delete_repo(repo_id, repo_type=repo_type)
            except net:
                pass
        raise failure from None
    prefix = "datasets/" if repo_type == "dataset" else ""
    return PushResult(repo_id=repo_id, repo_type=repo_type, url=f"{endpoint.rstrip('/')}/{prefix}{repo_id}",
                      commit=getattr(info, "oid", None), commit_url=getattr(info, "commit_url", None),
                      files=sorted(uploading), deleted=stale, created=created)


def _managed(patterns: Sequence[str]) -> Callable[[str], bool]:
    def match(path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) and ("/" in p or "/" not in path) for p in patterns)
    return match


# ------------------------------------------------------------------------------------------ models
def model_files(model_dir: str | os.PathLike, eval_results: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """``(local path, path in repo)`` of what a model push uploads (README.md comes on top)."""
    from .modeling_era import _check_model_dir

    model_dir = require_directory(model_dir, "model directory")
    _check_model_dir(model_dir)  # config.json of an ERA model, a readable model.safetensors
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    out = [(str(model_dir / "config.json"), "config.json"), (str(model_dir / "model.safetensors"), "model.safetensors")]
    code = sorted(p for p in model_dir.glob("*.py") if p.is_file())
    needed = {str(ref).split(".")[0] + ".py" for ref in (config.get("auto_map") or {}).values()}
    missing = sorted(needed - {p.name for p in code})
    if not needed:
        raise ERAError(f"{model_dir / 'config.json'} has no auto_map: save the model with era_hf "
                       "(ERAModel.save_pretrained) so that it loads with trust_remote_code")
    if missing:
        raise ERAError(f"{model_dir} lacks the remote-code file(s) {', '.join(missing)} named in config.json's "
                       "auto_map; save the model again with ERAModel.save_pretrained")
    out += [(str(p), p.name) for p in code]
    if config.get("lora"):
        lora = model_dir / LORA_DIR
        if not (lora / "adapter_config.json").is_file():
            raise ERAError(f"the model uses LoRA but {lora}/adapter_config.json is missing")
        out += [(str(p), p.relative_to(model_dir).as_posix()) for p in sorted(lora.rglob("*")) if p.is_file()]
    for name in MODEL_OPTIONAL:
        if name == "eval_results.json" and eval_results is not None:
            continue
        if (model_dir / name).is_file():
            out.append((str(model_dir / name), name))
    if eval_results is not None:
        if not Path(eval_results).is_file():
            raise ERAError(f"evaluation file {eval_results} does not exist")
        out.append((str(eval_results), "eval_results.json"))
    return out


def push_model(model_dir: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
               revision: str | None = None, eval_results: str | os.PathLike | None = None,
               commit_message: str | None = None, license: str | None = None,
               validate_on_hub: bool = True) -> PushResult:
    """Push a saved ERA model directory (with a generated model card) to a model repo in one commit.

    Args:
        model_dir: the directory written by ``ERAModel.save_pretrained`` / ``era-hf train``.
        repo_id: ``NAMESPACE/NAME``; created when missing (``private`` then applies; for an existing
            repo ``private=True`` makes it private).
        token: a write token (default: ``HF_TOKEN`` or the stored login).
        revision: branch to commit to (created from main when missing); default main.
        eval_results: evaluation JSON for the card and the repo (default: the directory's
            ``eval_results.json``).
        license: card license (default apache-2.0).
        validate_on_hub: also validate the card's metadata with the Hub before pushing.
    """
    from . import __version__
    from .model_card import DEFAULT_LICENSE, build_model_card

    _check_repo_id(repo_id)
    files = model_files(model_dir, eval_results)
    card = build_model_card(model_dir, eval_results, repo_id=repo_id, license=license or DEFAULT_LICENSE)
    return _push(repo_id, "model", files, _managed(MODEL_MANAGED), card=card, private=private, token=token,
                 revision=revision, commit_message=commit_message or f"Upload ERA model (era_hf {__version__})",
                 validate_on_hub=validate_on_hub)


# ------------------------------------------------------------------------------------------ indexes
def push_index(index_dir: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
               revision: str | None = None, commit_message: str | None = None, license: str | None = None,
               validate_on_hub: bool = True) -> PushResult:
    """Push a saved :class:`~era_hf.index.DocumentIndex` directory to a DATASET repo (with a dataset card).

    Load it back with ``DocumentIndex.load(repo_id)``.
    """
    from . import __version__
    from .index import DocumentIndex
    from .model_card import build_index_card

    _check_repo_id(repo_id)
    index_dir = require_directory(index_dir, "index directory")
    DocumentIndex.load(index_dir)  # complete, checksums match, FAISS readable
    files = [(str(index_dir / name), name) for name in INDEX_FILES]
    card = build_index_card(index_dir, repo_id=repo_id, license=license)
    return _push(repo_id, "dataset", files, _managed(INDEX_FILES), card=card, private=private, token=token,
                 revision=revision, commit_message=commit_message or f"Upload ERA document index (era_hf {__version__})",
                 validate_on_hub=validate_on_hub)


# ------------------------------------------------------------------------------------------ CLI
def register_cli(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--repo-id", required=True, help=f"target {what} repo, NAMESPACE/NAME")
        p.add_argument("--private", action="store_true", help="create the repo private (or make it private)")
        p.add_argument("--token", help="Hub write token (default: $HF_TOKEN or `hf auth login`); prefer the "
                                       "environment: a command-line token is visible to other local users")
        p.add_argument("--revision", help="branch to commit to (created when missing; default: main)")
        p.add_argument("--commit-message", help="commit title")
        p.add_argument("--license", help="card license, a Hub license id (models default to apache-2.0)")

    p = sub.add_parser("push", help="push an ERA model directory to the Hub (with a model card), one commit",
                       description="Upload config, head safetensors, remote-code files, LoRA adapter, training log, "
                                   "loss plot and evaluation results of a model directory, with a generated "
                                   "README.md model card, as one atomic commit.")
    p.add_argument("model_dir", metavar="DIR", help="model directory (ERAModel.save_pretrained / era-hf train)")
    common(p, "model")
    p.add_argument("--eval-results", metavar="FILE", help="evaluation JSON from `era-hf evaluate --output` "
                                                          "(default: DIR/eval_results.json if present)")
    p.set_defaults(func=_run_push)

    p = sub.add_parser("push-index", help="push a document index directory to a Hub dataset repo",
                       description="Upload index.faiss, documents.jsonl and index_config.json with a dataset card, "
                                   "as one commit; load it back with DocumentIndex.load(REPO_ID).")
    p.add_argument("index_dir", metavar="INDEX_DIR", help="index directory (DocumentIndex.save)")
    common(p, "dataset")
    p.set_defaults(func=_run_push_index)

    p = sub.add_parser("card", help="render an ERA model's model card (README.md) without pushing")
    p.add_argument("model_dir", metavar="DIR", help="model directory")
    p.add_argument("--output", metavar="FILE", help="write the card here (default: print it)")
    p.add_argument("--eval-results", metavar="FILE", help="evaluation JSON (default: DIR/eval_results.json)")
    p.add_argument("--repo-id", help="Hub id shown in the usage snippets (default: YOUR_NAMESPACE/<DIR name>)")
    p.add_argument("--license", help="license id (default apache-2.0)")
    p.set_defaults(func=_run_card)

    p = sub.add_parser("export-st", help="export an ERA model as a sentence-transformers model "
                                         "(encode_query / encode_document)")
    p.add_argument("model", metavar="MODEL_DIR", help="ERA model directory or Hub id")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where to write the sentence-transformers model")
    p.add_argument("--revision", help="Hub revision of MODEL_DIR when it is a Hub id")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    p.set_defaults(func=_run_export_st)


def _run_push(args: argparse.Namespace) -> int:
    result = push_model(args.model_dir, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                        eval_results=args.eval_results, commit_message=args.commit_message, license=args.license)
    print(result.summary())
    return 0


def _run_push_index(args: argparse.Namespace) -> int:
    result = push_index(args.index_dir, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                        commit_message=args.commit_message, license=args.license)
    print(result.summary())
    return 0


def _run_card(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_text, check_writable
    from .model_card import DEFAULT_LICENSE, build_model_card

    if args.output is not None:
        check_writable(args.output, "--output")
    card = build_model_card(args.model_dir, args.eval_results, repo_id=args.repo_id,
                            license=args.license or DEFAULT_LICENSE)
    if args.output is not None:
        atomic_write_text(args.output, str(card))
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(str(card))
    return 0


def _run_export_st(args: argparse.Namespace) -> int:
    try:
        from .sentence_transformers_export import check_export_target, export_sentence_transformers
    except ImportError as err:
        raise ERAError(f"export-st needs sentence-transformers >= 6.2: pip install 'era_hf[st]' ({err})") from None
    from . import ERAModel
    from .atomic import check_writable

    check_export_target(args.output_dir, args.overwrite, args.model)  # before the models load
    check_writable(args.output_dir, "OUTPUT_DIR", directory=True)
    model = ERAModel.from_pretrained(args.model, **({"revision": args.revision} if args.revision else {}))
    path = export_sentence_transformers(model, args.output_dir, overwrite=args.overwrite)
    print(f"wrote sentence-transformers model {path}; load it with "
          f"SentenceTransformer({str(path)!r}, trust_remote_code=True)")
    return 0
