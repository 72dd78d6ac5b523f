"""``ERATrainer``: the whole ERA training run (stage 1, stage 2, checkpoints, outputs) on Accelerate.

Example:
    >>> from era_hf.task_embeddings import EncoderPair
    >>> from era_hf.tasks import load_suite
    >>> from era_hf.training import ERATrainer, TrainingArguments
    >>> args = TrainingArguments.from_recipe("reference", output_dir="out", mode="both",
    ...                                      alignment={"epochs": 5}, adaptation={"epochs": 20})
    >>> pair = EncoderPair("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
    >>> model = ERATrainer(pair, load_suite("../shared/data/adi"), args).train()  # doctest: +SKIP
    >>> model.config.init, model.config.mode  # doctest: +SKIP
    ('random', 'both')

Outputs (``args.output_dir``): the :class:`~era_hf.ERAModel` (``config.json`` with the recipe,
init and mode recorded, head safetensors, remote code; loadable with
``AutoModel.from_pretrained(OUTPUT, trust_remote_code=True)``), ``training_log.json``,
``loss_curves.png`` and ``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, atomic_write_json
from ..errors import ERAError
from . import adaptation as stage2
from . import alignment as stage1
from .arguments import (TrainingArguments, check_alignment_tasks_read, distills, parse_stop_after,
                        resolved_lexical_margin_se, resolved_score_weight_guard)
from .checkpoints import CheckpointMismatch, Checkpoints, check_compatible, rng_state, set_rng_state
from .data import (Embedder, build_adaptation_data, build_alignment_data, build_distillation_data,
                   non_test_query_ids, prepare_tasks)
from .loop import EpochLoop, LoopState, TrainingStopped
from .shrinkage import shrink_correction

logger = logging.getLogger("era_hf.training")


def _setup_logging(quiet: bool, is_main: bool) -> None:
    level = logging.WARNING if quiet or not is_main else logging.INFO
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


#: Marks an accelerate state that era_hf created (and may therefore replace) in accelerate's shared state.
_OWNED_STATE = "_era_hf_owned"


def make_accelerator(cpu: bool = False) -> Any:
    """An Accelerator on the device that ``cpu`` asks for.

    accelerate keeps one state per process and hands it to every later Accelerator, so a second training
    run in one process would silently run where the first did (the CPU after a ``cpu=True`` run, the GPU
    after a GPU run). In a single process, a state that an earlier era_hf run created is replaced; a state
    the caller created is kept when it is on the requested device and refused with an ERAError when not
    (clearing it would break the caller's own Accelerator). Under a distributed launch the launch decides
    the device, and a conflicting ``cpu`` is reported.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if shared and PartialState().distributed_type == DistributedType.NO:
        state = PartialState()
        if shared.get(_OWNED_STATE):
            AcceleratorState._reset_state(reset_partial_state=True)
        elif state.device.type != ("cpu" if cpu else state.default_device.type):
            raise ERAError(f"this process already runs accelerate on {state.device} (an Accelerator created "
                           f"before training), and accelerate keeps one device per process: cpu={cpu} cannot take "
                           "effect; pass that Accelerator to ERATrainer(accelerator=...) or train in a new process")
    owned = not shared  # the same dict, emptied by a reset
    try:
        accelerator = Accelerator(cpu=cpu) if cpu else Accelerator()
    except ValueError:  # a distributed launch's state with other settings
        warnings.warn(f"cpu={cpu} is ignored: this distributed launch already chose its devices", stacklevel=2)
        accelerator = Accelerator()
    if owned:
        PartialState._shared_state[_OWNED_STATE] = True
    return accelerator


#: Files of a trained model that a run writes into its output directory (and would replace).
MODEL_FILES = ("config.json", "model.safetensors", "training_log.json")


def _describe_revision(revision: str | None) -> str | None:
    return None if revision is None or str(revision).startswith("local:") else revision


class ERATrainer:
    """Train an ERA adapter head on cached embeddings.

    Args:
        model_or_pair: an :class:`~era_hf.task_embeddings.EncoderPair` (head settings from ``args``),
            an :class:`~era_hf.ERAModel` (its config fixes encoders and head; its current head is the
            starting point), or None (the pair named in ``args``).
        tasks: :class:`~era_hf.tasks.RetrievalTask` objects or task specs (pooled training).
        args: :class:`TrainingArguments` (``output_dir`` required).
        accelerator: an ``accelerate.Accelerator`` (default: one is created).

    ``train()`` returns the trained :class:`~era_hf.ERAModel` (head only; call
    ``model.attach_encoders()`` before ``encode_queries``) and writes the outputs.
    Attributes after training: ``log`` (the training log dict), ``data`` (stage-2 tensors).
    """

    def __init__(self, model_or_pair: Any = None, tasks: Sequence[Any] = (), args: TrainingArguments | None = None,
                 accelerator: Any = None, alignment_tasks: Sequence[Any] = ()) -> None:
        if args is None:
            raise ERAError("ERATrainer needs TrainingArguments (args=...)")
        if not isinstance(args, TrainingArguments):
            raise ERAError(f"args must be TrainingArguments, got {type(args).__name__}")
        args.validate()
        if not args.output_dir:
            raise ERAError("output_dir is required (where the model, log and checkpoints go)")
        self.args = args
        self.model_or_pair = model_or_pair
        self.tasks = list(tasks)
        if not self.tasks and args.tasks:
            self.tasks = list(args.tasks)
        if not self.tasks:
            raise ERAError("no tasks to train on (pass tasks=... or args.tasks)")
        self.alignment_tasks = list(alignment_tasks) or list(args.alignment_tasks)
        if self.alignment_tasks and args.alignment.include_queries:
            raise ERAError("alignment.include_queries uses the training tasks' query texts: it cannot be combined "
                           "with alignment_tasks (stage 1 on other tasks' documents)")
        given_config = getattr(model_or_pair, "config", None)  # a given ERAModel fixes the head (anchored or not)
        anchor = bool(given_config.anchor) if hasattr(given_config, "anchor") else args.anchor
        check_alignment_tasks_read(args, bool(self.alignment_tasks), anchor)
        self.accelerator = accelerator
        self.log: dict[str, Any] = {}
        self.data: Any = None

    # ------------------------------------------------------------------ set-up
    def _pair(self, acc: Any) -> tuple[Any, Any]:
        from ..modeling_era import ERAModel, default_query_format
        from ..task_embeddings import EncoderPair

        a = self.args
        cache = None
        if a.cache_dir:
            from ..cache import EmbeddingCache

            cache = EmbeddingCache(a.cache_dir)
        device = str(acc.device)
        show = False if a.quiet else None
        obj = self.model_or_pair
        if isinstance(obj, ERAModel):
            pair = EncoderPair.from_config(obj.config, cache=cache, batch_size=a.encode_batch_size, device=device,
                                           show_progress_bar=show)
            return pair, obj
        if obj is None:
            dq = a.document_query_format
            dq = default_query_format(a.document_encoder) if dq == "auto" else dq
            pair = EncoderPair(a.query_encoder, a.document_encoder, query_encoder_revision=a.query_encoder_revision,
                               document_encoder_revision=a.document_encoder_revision, query_pooling=a.query_pooling,
                               document_pooling=a.document_pooling, query_max_length=a.query_max_length,
                               document_max_length=a.document_max_length, query_format=a.query_format,
                               document_query_format=dq, cache=cache, batch_size=a.encode_batch_size,
                               device=device, show_progress_bar=show)
            return pair, None
        if hasattr(obj, "embed_query_side") and hasattr(obj, "queries"):
            if getattr(obj, "device", "x") is None:
                obj.device = device
            return obj, None
        raise ERAError(f"model_or_pair must be an ERAModel, an EncoderPair or None; got {type(obj).__name__}")

    @staticmethod
    def _load_tasks(given: list[Any]) -> list[Any]:
        from ..tasks import load_suite

        specs = [t for t in given if isinstance(t, (str, os.PathLike))]
        if specs and len(specs) != len(given):
            raise ERAError("tasks must be all RetrievalTask objects or all specs")
        if not specs:
            return given
        tasks: list[Any] = []
        for spec in specs:  # each spec: a task (dir / hub id / builtin) or a suite directory of task dirs
            tasks += load_suite(os.fspath(spec))
        return tasks

    def _attach_query_logs(self, tasks: list[Any], alignment_tasks: list[Any]) -> tuple[list, list, list]:
        """``unlabelled_queries``: each log joins the task stage 1 reads (an alignment task when given)."""
        a = self.args
        if not a.unlabelled_queries:
            return tasks, alignment_tasks, []
        has_alignment_tasks = bool(alignment_tasks)
        if a.mode == "label_only" or not (distills(a) or
                                          resolved_score_weight_guard(a, has_alignment_tasks) == "clarity"):
            raise ERAError("unlabelled_queries: no step of this run reads unlabelled query texts; stage 1's "
                           "distillation (--recipe recommended) and --alignment.score-weight-guard clarity do")
        from ..tasks.unlabelled import attach_query_logs

        stage1_tasks, records = attach_query_logs(alignment_tasks or tasks, a.unlabelled_queries)
        for r in records:
            left_out = r["left_out"]["repeats_a_task_query"] + r["left_out"]["repeats_the_log"]
            if left_out:
                warnings.warn(f"query log {r['file']}: {left_out} queries repeat the task's queries or the log's "
                              f"and were left out ({r['added']} added to task {r['task']!r})", stacklevel=2)
        return (tasks, stage1_tasks, records) if alignment_tasks else (stage1_tasks, alignment_tasks, records)

    def _check_output(self, acc: Any) -> Path:
        """Before any encoding starts: the output directory must be writable (probed), and what an earlier run left
        there is never replaced unasked: its checkpoints need --resume or --overwrite, a trained model without
        checkpoints needs --overwrite."""
        from accelerate.utils import broadcast_object_list

        out = Path(self.args.output_dir).expanduser()
        problem: list[Any] = [None, False]  # message, whether it is a CheckpointMismatch
        if acc.is_main_process:
            try:
                if out.exists() and not out.is_dir():
                    raise OSError(f"{out} exists and is not a directory")
                problem[:] = self._earlier_run_problem(out)
                if problem[0] is None:
                    out.mkdir(parents=True, exist_ok=True)
                    fd, probe = tempfile.mkstemp(prefix=".era-write-probe-", dir=out)
                    os.close(fd)
                    os.unlink(probe)
            except OSError as err:
                problem[:] = [f"output directory {str(out)!r} is not writable: {err.strerror or err}", False]
        if acc.num_processes > 1:
            broadcast_object_list(problem)
        if problem[0]:
            raise (CheckpointMismatch if problem[1] else ERAError)(problem[0])
        return out

    def _earlier_run_problem(self, out: Path) -> tuple[str | None, bool]:
        """Why this run may not write into ``out`` (None when it may), and whether that is a CheckpointMismatch
        (``--resume`` with no checkpoint to continue, only a finished model: a caller that owns the folder may
        start over with ``overwrite``, as ``era-hf demo`` does)."""
        a = self.args
        if not out.is_dir():
            return None, False
        ckpts = Checkpoints(out)
        if ckpts.exists():
            if a.resume or a.overwrite:
                return None, False
            return (f"{ckpts.root} holds checkpoints of an earlier run: pass --resume to continue it or --overwrite "
                    "to start again"), False
        found = [name for name in MODEL_FILES if (out / name).is_file()]
        if not found or a.overwrite:
            return None, False
        held = f"output directory {str(out)!r} already holds a trained model ({', '.join(found)})"
        if a.resume:
            return (f"{held} but no checkpoints: --resume has nothing to continue, and training would replace "
                    "the model; pass --overwrite instead of --resume to replace it, or choose another --output"), True
        return f"{held}; training would replace it: pass --overwrite to replace it, or choose another --output", False

    def _dims(self, pair: Any, model: Any) -> tuple[int, int]:
        if model is not None:
            return int(model.config.query_dim), int(model.config.document_dim)
        from transformers import AutoConfig

        from ..text_encoding import encoder_load_error

        described = pair.describe()
        dims = []
        for side, model_id in (("query", pair.query_encoder_id), ("document", pair.document_encoder_id)):
            what = f"{side} encoder {model_id!r} (--{side}-encoder)"
            revision = described[f"{side}_encoder"]["requested_revision"]
            try:
                config = AutoConfig.from_pretrained(model_id, revision=revision)
            except (OSError, ValueError) as err:  # a folder without a model's config.json: ValueError
                raise encoder_load_error(model_id, revision, err, what) from None
            dim = getattr(config, "hidden_size", None)
            if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
                raise ERAError(f"the config of the {what} ({type(config).__name__}) gives no embedding size "
                               f"(hidden_size: {dim!r}): it is not a text encoder era_hf can pool")
            dims.append(dim)
        return dims[0], dims[1]

    def _config(self, pair: Any, model: Any, dims: tuple[int, int], tasks: Sequence[Any]) -> Any:
        from ..configuration_era import ERAConfig

        if model is not None:
            return copy.deepcopy(model.config)
        a = self.args
        d = pair.describe()
        q, dd = d["query_encoder"], d["document_encoder"]
        instructions = {t.instruction for t in tasks}
        return ERAConfig(
            query_encoder=pair.query_encoder_id, document_encoder=pair.document_encoder_id,
            query_encoder_revision=_describe_revision(q["revision"]),
            document_encoder_revision=_describe_revision(dd["revision"]),
            query_dim=dims[0], document_dim=dims[1], query_pooling=q["pooling"], document_pooling=dd["pooling"],
            normalize_query_embeddings=q["normalize"], normalize_document_embeddings=dd["normalize"],
            query_max_length=q["max_length"], document_max_length=dd["max_length"],
            query_format=d["query_format"], document_query_format=d["document_query_format"],
            default_instruction=instructions.pop() if len(instructions) == 1 else "",
            head_type=a.head, head_kwargs=dict(a.head_kwargs), anchor=a.anchor)

    def _compat(self, config: Any, tasks: Sequence[Any], alignment_tasks: Sequence[Any]) -> dict[str, Any]:
        flat = self.args.flat(include_neutral=False)
        for k in ("tasks", "alignment_tasks", "output_dir", "recipe", "query_encoder", "document_encoder", "head",
                  "anchor", "head_kwargs"):
            flat.pop(k, None)
        return {**flat, "query_encoder": config.query_encoder, "document_encoder": config.document_encoder,
                "query_dim": config.query_dim, "document_dim": config.document_dim, "head": config.head_type,
                "head_kwargs": dict(config.head_kwargs), "anchor": bool(config.anchor),
                "tasks": [[t.name, getattr(t, "revision", None)] for t in tasks],
                "alignment_tasks": [[t.name, getattr(t, "revision", None)] for t in alignment_tasks]}

    # ------------------------------------------------------------------ the run
    def train(self) -> Any:
        t_start = time.perf_counter()
        a = self.args
        acc = self.accelerator or make_accelerator(a.cpu)
        self.accelerator = acc
        _setup_logging(a.quiet, acc.is_main_process)
        out = self._check_output(acc)
        from accelerate.utils import set_seed

        set_seed(a.seed)
        stop_stage, stop_epoch = parse_stop_after(a.stop_after) if a.stop_after else (None, None)
        pair, given_model = self._pair(acc)
        tasks = self._load_tasks(self.tasks)
        alignment_tasks = self._load_tasks(self.alignment_tasks) if self.alignment_tasks else []
        tasks, alignment_tasks, query_logs = self._attach_query_logs(tasks, alignment_tasks)
        dims = self._dims(pair, given_model)
        config = self._config(pair, given_model, dims, tasks)
        if config.lora:
            raise ERAError("training a LoRA query encoder is not supported by era-hf train (heads only)")
        compat = self._compat(config, tasks, alignment_tasks)
        ckpts = Checkpoints(out, acc)
        if ckpts.exists() and a.overwrite:  # without --resume or --overwrite, _check_output refused them already
            ckpts.clear()
        saved = {s: ckpts.load(s) for s in ("alignment", "adaptation")}
        for s, st in saved.items():
            if st is not None:
                check_compatible(st["compat"], compat, ckpts.stage_dir(s))
        if a.resume and not any(saved.values()) and acc.is_main_process:
            logger.info("--resume: no checkpoint in %s, starting from scratch", ckpts.root)

        from ..modeling_era import ERAModel

        torch.manual_seed(a.seed)
        model = given_model if given_model is not None else ERAModel(config)
        base_head = copy.deepcopy(model.head).cpu()
        infos = prepare_tasks(tasks, a)
        align_infos = prepare_tasks(alignment_tasks, a, labels=False) if alignment_tasks else infos
        embedder = Embedder(pair, acc)
        device = acc.device
        timings: dict[str, float] = {}
        log_stages: dict[str, Any] = {}

        # ---------------------------------------------------------- stage 1
        run_stage1 = a.mode in ("both", "alignment_only")
        anchored_skip = bool(config.anchor) and a.alignment.anchored == "skip"
        stage1_state: dict[str, torch.Tensor] | None = None
        init_label = "random"
        if run_stage1 and anchored_skip:
            init_label = "zero (anchored; stage 1 skipped)"
            log_stages["alignment"] = {"skipped": "anchored head: for identical texts the anchor is the target, the "
                                                  "zero map is optimal (alignment.anchored='skip')"}
            stage1_state = {k: v.clone() for k, v in base_head.state_dict().items()}
            if config.anchor and a.mode == "alignment_only":
                warnings.warn("alignment_only with an anchored head and anchored='skip' gives the cheap baseline "
                              "(document encoder on both sides)", stacklevel=2)
        elif run_stage1:
            t0 = time.perf_counter()
            stage1_state, info1 = self._stage1(acc, ckpts, saved["alignment"], base_head, infos, align_infos,
                                               embedder, config, compat, device, stop_stage, stop_epoch)
            timings["alignment_seconds"] = round(time.perf_counter() - t0, 3)
            log_stages["alignment"] = info1
            init_label = info1["init"]["method"]
            if info1["init"]["method"] != "random" and a.alignment.refine_epochs:
                init_label += f"+sgd{a.alignment.refine_epochs}"
            if given_model is not None and init_label == "random":
                init_label = "given model"
        elif given_model is not None:
            init_label = "given model"
        if stop_stage == "alignment" and stop_epoch is None:
            raise TrainingStopped("stopped after stage 1 (stop_after='alignment')")

        # ---------------------------------------------------------- stage 2
        final_state = stage1_state if stage1_state is not None else base_head.state_dict()
        if a.mode in ("both", "label_only"):
            t0 = time.perf_counter()
            start_state = stage1_state if a.mode == "both" else base_head.state_dict()
            final_state, info2 = self._stage2(acc, ckpts, saved["adaptation"], base_head, start_state,
                                              stage1_state if a.mode == "both" else None, infos, embedder, config,
                                              compat, device, stop_stage, stop_epoch)
            timings["adaptation_seconds"] = round(time.perf_counter() - t0, 3)
            log_stages["adaptation"] = info2

        # ---------------------------------------------------------- shrinking the correction (after stage 2 only)
        if a.adaptation.shrink_margin_se is not None and a.mode in ("both", "label_only"):
            head = _head_with(base_head, final_state, device)
            needed_by = "adaptation.shrink_margin_se picks the correction's scale"
            val_ndcg = self._val_ndcg(infos, embedder, device, needed_by=needed_by)
            log_stages["shrinkage"] = shrink_correction(head, val_ndcg, a.adaptation.shrink_scales,
                                                        a.adaptation.shrink_margin_se)
            final_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}

        # ---------------------------------------------------------- hybrid search's BM25 weight (labels: validation)
        lexical_margin = resolved_lexical_margin_se(a)
        if lexical_margin is not None:
            head = _head_with(base_head, final_state, device)
            val_ndcg = self._val_ndcg(infos, embedder, device, needed_by="adaptation.lexical_margin_se picks "
                                                                          "hybrid search's BM25 weight")
            weight, record = stage1.pick_by_validation(a.adaptation.lexical_weights, lambda w: val_ndcg(head, w),
                                                       lexical_margin, "BM25 weight")
            model.config.lexical_weight = weight
            log_stages["lexical_weight"] = {"lexical_weight": weight, **record, "selected_by": "validation nDCG@10 "
                                            "of hybrid search" + record["selected_by"]}

        # ---------------------------------------------------------- outputs
        model.head.load_state_dict({k: v.to(model.head_device) for k, v in final_state.items()})
        if not all(bool(torch.isfinite(p).all()) for p in model.head.parameters()):
            raise ERAError("the trained head has non-finite weights; nothing was saved")
        from .recipes import recipe_overrides

        overrides = recipe_overrides(a)
        config = model.config
        config.init = init_label
        config.recipe = a.recipe if not overrides else f"{a.recipe} (modified)"
        config.mode = a.mode
        config.label_ratio = a.label_ratio if a.mode != "alignment_only" else None
        config.training = {"recipe": a.recipe, "recipe_overrides": overrides, "mode": a.mode,
                           "label_ratio": a.label_ratio, "seed": a.seed, "split_seed": a.split_seed,
                           "tasks": [t.name for t in tasks]}
        if alignment_tasks:
            config.training["alignment_tasks"] = [t.name for t in alignment_tasks]
        timings["total_seconds"] = round(time.perf_counter() - t_start, 3)
        self.log = self._training_log(config, pair, infos, log_stages, timings, overrides, embedder)
        if query_logs:
            self.log["unlabelled_queries"] = query_logs
        acc.wait_for_everyone()
        if acc.is_main_process:
            model.save_pretrained(out)
            atomic_write_json(out / "training_log.json", self.log)
            if a.plot:
                plot_loss_curves(self.log, out / "loss_curves.png")
            logger.info("saved the ERA model to %s (%.1f s)", out, timings["total_seconds"])
        acc.wait_for_everyone()
        return model

    # ------------------------------------------------------------------ stages
    @contextlib.contextmanager
    def _threads(self, device: Any, small: bool):
        """CPU thread count for a block of small tensor work (``args.num_threads``; auto: 1 thread when
        ``small``, where thread start-up / oversubscription costs more than it saves); restored afterwards."""
        n = self.args.num_threads
        if n is None:
            if torch.device(device).type != "cpu" or not small:
                yield
                return
            n = 1
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def _stage1(self, acc, ckpts, saved, base_head, infos, align_infos, embedder, config, compat, device, stop_stage,
                stop_epoch):
        a = self.args
        al = a.alignment
        if saved is not None and saved["complete"]:
            logger.info("alignment: finished in an earlier run (checkpoint), skipped")
            return saved["head"], saved["extra"]["info"]
        data = build_alignment_data(align_infos, embedder, a, device)
        if data.x_train.shape[1] != config.query_dim or data.y_train.shape[1] != config.document_dim:
            raise ERAError(f"the head maps {config.query_dim}-d to {config.document_dim}-d but the encoders give "
                           f"{data.x_train.shape[1]}-d and {data.y_train.shape[1]}-d embeddings")
        head = copy.deepcopy(base_head).to(device)  # the closed-form inits read tensors already on the device
        if saved is not None:
            head.load_state_dict(saved["head"])
            init_info = saved["extra"]["init"]
        elif distills(a):
            groups = build_distillation_data(align_infos, embedder, a, device)
            init_info = stage1.distilled_score_init(head, data, groups, al, a.seed)
            record = init_info["distillation"]
            logger.info("alignment: score map distilled from the fused scores (teacher weight %s, lexical weight %s, "
                        "%d steps, loss %.4f -> %.4f, %.1f s)", record["teacher_weight"], record["lexical_weight"],
                        record["steps"], record["loss_first_tenth"], record["loss_last_tenth"], record["seconds"])
        elif config.anchor and al.anchored == "score":
            with self._threads(device, max(config.query_dim, config.document_dim) <= 1024):
                with_train = al.score_weight_queries == "train_val" and a.mode != "alignment_only"
                guarded = resolved_score_weight_guard(a, bool(self.alignment_tasks)) == "clarity"
                guard = self._clarity(align_infos, embedder, device) if guarded else None
                init_info = stage1.score_preserving_init(
                    head, data, al, self._val_ndcg(infos, embedder, device, with_train),
                    selected_by=f"{'train + validation' if with_train else 'validation'} nDCG@10", guard=guard)
            gain = init_info.get("gain_over_weight_0")
            logger.info("alignment: score-preserving map, weight %s (validation nDCG@10 %s%s%s)", init_info["weight"],
                        init_info["val_ndcg@10"],
                        f"; the clarity guard kept {init_info['guard']['kept']}" if "guard" in init_info else "",
                        f"; {gain['gain']:+.4f} ± {gain['standard_error']:.4f} over weight 0" if gain else "")
        elif al.init != "random":
            with self._threads(device, max(config.query_dim, config.document_dim) <= 1024):
                init_info = stage1.closed_form_init(head, data, al)
            logger.info("alignment: %s init, held-out cosine %s", al.init, init_info.get("heldout_cosine"))
        else:
            init_info = {"method": "random"}
        config.init = init_info["method"]  # recorded in the checkpoints' config.json too
        closed_form = al.init != "random" or (config.anchor and al.anchored == "score")
        epochs = al.refine_epochs if closed_form else al.epochs
        optimizer = torch.optim.AdamW(head.parameters(), lr=al.lr, weight_decay=al.weight_decay)
        model, optimizer = acc.prepare(head, optimizer)
        module = acc.unwrap_model(model)
        state = LoopState()
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            state = LoopState.from_dict(saved["loop"])
            set_rng_state(saved["rng"])
            logger.info("alignment: resuming after epoch %d", state.epoch)
        extra = {"init": init_info, "counts": data.counts, "n_train": data.n_train,
                 "n_eval": int(data.x_eval.shape[0])}

        def save(st: LoopState) -> None:
            ckpts.save("alignment", {"complete": st.complete, "loop": st.to_dict(), "head": module.state_dict(),
                                     "optimizer": optimizer.state_dict(), "scheduler": None, "rng": rng_state(),
                                     "extra": extra, "compat": compat}, config)

        loop = EpochLoop(stage="alignment", accelerator=acc, model=model, optimizer=optimizer, scheduler=None,
                         n_train=data.n_train, batch_size=al.batch_size, epochs=epochs, seed=a.seed,
                         loss_fn=stage1.make_loss_fn(data, al),
                         evaluate=stage1.make_evaluate(data, al, module, acc), monitor="eval_loss",
                         patience=al.early_stopping_patience, checkpoint=save, checkpoint_every=al.checkpoint_every,
                         stop_after_epoch=stop_epoch if stop_stage == "alignment" else None,
                         show_progress=not a.quiet, log_epochs=not a.quiet, average="items")
        rows = -(-min(al.batch_size, data.n_train) // acc.num_processes)
        with self._threads(device, rows * config.query_dim * config.document_dim < 2**26):
            state = loop.run(state)
        head_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        info = {**extra, "epochs_run": state.epoch, "best_epoch": state.best_epoch, "best_eval_loss": state.best_value,
                "stopped_early": state.stopped_early, "history": state.history, "seconds": round(state.seconds, 3)}
        extra["info"] = info
        save(state)
        return head_state, info

    def _val_ndcg(self, infos: Sequence[Any], embedder: Any, device: Any, with_train: bool = False,
                  needed_by: str = "alignment.anchored='score' picks its weight"
                  ) -> Callable[[torch.nn.Module], list[np.ndarray]]:
        """``head -> per-task arrays of per-query nDCG@10`` over the tasks' validation queries (and train queries
        when ``with_train``; never test queries), optionally in hybrid search (``score(head, lexical_weight)``);
        ``needed_by`` names the user of it in the error raised when no task has such a query."""
        from ..evaluation import lexical_scores, search_exact
        from ..metrics import retrieval_metrics

        per_task = []
        for info in infos:
            pool = (list(info.split.train) if with_train else []) + list(info.split.val)
            qids = [q for q in pool
                    if any(s > 0 and d in info.doc_row for d, s in info.task.qrels.get(q, {}).items())]
            if qids:
                per_task.append((info, qids, *_query_views(info, qids, embedder, device)))
        if not per_task:
            raise ERAError(f"{needed_by} on validation queries, but no task has one")

        lexical: dict[int, np.ndarray] = {}  # BM25 of each task's validation queries, on first use

        def score(head: torch.nn.Module, lexical_weight: float = 0.0) -> list[np.ndarray]:
            values = []
            with torch.no_grad():
                for i, (info, qids, q, a) in enumerate(per_task):
                    pred = head(q, a).cpu().numpy()
                    if lexical_weight and i not in lexical:
                        lexical[i] = lexical_scores(info.task, qids)
                    ranked = search_exact(pred, info.corpus(embedder), info.doc_ids, k=10, lexical=lexical.get(i),
                                          lexical_weight=lexical_weight)
                    values.append(np.asarray(retrieval_metrics(qids, ranked, info.task.qrels, ks=(10,))["ndcg@10"]))
            return values

        return score

    def _clarity(self, infos: Sequence[Any], embedder: Any,
                 device: Any) -> Callable[[torch.nn.Module], float] | None:
        """``head -> mean query clarity`` over the searched tasks' non-test queries (texts only, no labels);
        ``None`` (no guard, with a warning) under 'auto' when they have no such query."""
        per_task = []
        for info in infos:
            qids = non_test_query_ids(info, self.args)
            if qids:
                corpus = torch.tensor(info.corpus(embedder), device=device)  # a copy: the cache is read-only
                per_task.append((*_query_views(info, qids, embedder, device), corpus))
        if not per_task:
            message = ("alignment.score_weight_guard reads the query texts of the tasks stage 1 aligns on, but they "
                       "have none outside their test split")
            if self.args.alignment.score_weight_guard == "clarity":
                raise ERAError(message)
            warnings.warn(f"{message}: the weight is picked without the guard", stacklevel=2)
            return None

        def clarity(head: torch.nn.Module) -> float:
            with torch.no_grad():
                return float(np.mean([stage1.query_clarity(head(q, a), corpus) for q, a, corpus in per_task]))

        return clarity

    def _teacher(self, mode_teacher: str, stage1_state, base_head, anchored: bool, device):
        if mode_teacher == "document":
            return lambda q, d: d
        head = _head_with(base_head, stage1_state, device).eval()

        def teacher(q: np.ndarray, d: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                x = torch.as_tensor(np.array(q, dtype=np.float32), device=device)
                anchor = torch.as_tensor(np.array(d, dtype=np.float32), device=device) if anchored else None
                return head(x, anchor).cpu().numpy()

        return teacher

    def _stage2(self, acc, ckpts, saved, base_head, start_state, stage1_state, infos, embedder, config, compat, device,
                stop_stage, stop_epoch):
        a = self.args
        b = a.adaptation
        if saved is not None and saved["complete"]:
            logger.info("adaptation: finished in an earlier run (checkpoint), skipped")
            return saved["head"], saved["extra"]["info"]
        teacher_kind = b.teacher if b.teacher != "auto" else ("stage1" if a.mode == "both" else "document")
        if teacher_kind == "stage1" and stage1_state is None:
            raise ERAError("adaptation.teacher='stage1' needs stage-1 weights (mode both)")
        if b.anchor_penalty > 0 and stage1_state is None:
            raise ERAError("adaptation.anchor_penalty pulls the head toward its stage-1 weights: it needs mode both")
        teacher = self._teacher(teacher_kind, stage1_state, base_head, bool(config.anchor), device)
        data = build_adaptation_data(infos, embedder, a, teacher, bool(config.anchor), device)
        self.data = data
        if data.q.shape[1] != config.query_dim or data.docs.shape[1] != config.document_dim:
            raise ERAError(f"the head maps {config.query_dim}-d to {config.document_dim}-d but the encoders give "
                           f"{data.q.shape[1]}-d and {data.docs.shape[1]}-d embeddings")
        head = _head_with(base_head, saved["head"] if saved is not None else start_state, device)
        n_train = len(data.train)
        steps_per_epoch = -(-n_train // b.batch_size)
        optimizer = torch.optim.AdamW(head.parameters(), lr=b.lr, weight_decay=b.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, stage2.reference_lr_lambda(steps_per_epoch * b.epochs, b.warmup_ratio, b.schedule))
        model, optimizer = acc.prepare(head, optimizer)  # the scheduler steps once per global batch: not prepared
        module = acc.unwrap_model(model)
        state = LoopState()
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = LoopState.from_dict(saved["loop"])
            set_rng_state(saved["rng"])
            logger.info("adaptation: resuming after epoch %d", state.epoch)
        patience = b.early_stopping_patience
        if len(data.val) == 0 and patience is not None:
            warnings.warn("no validation pairs: early stopping is disabled for stage 2", stacklevel=2)
            patience = None
        monitor = "val_ndcg@10" if b.early_stopping_metric == "ndcg@10" else "val_loss"
        extra = {"teacher": teacher_kind, "negatives": b.negatives, "pairs": data.stats,
                 "n_train_pairs": n_train, "n_val_pairs": len(data.val), "n_documents_used": int(data.docs.shape[0]),
                 "steps_per_epoch": steps_per_epoch}

        def save(st: LoopState) -> None:
            ckpts.save("adaptation", {"complete": st.complete, "loop": st.to_dict(), "head": module.state_dict(),
                                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                      "rng": rng_state(), "extra": extra, "compat": compat}, config)

        penalties, epoch_hooks = [], []
        if b.anchor_penalty > 0:
            penalties.append(stage2.make_penalty_fn(stage1_state, b.anchor_penalty))
        if b.distill_weight > 0:
            term, start_epoch = stage2.make_distillation_term(build_distillation_data(infos, embedder, a, device),
                                                              a.alignment, b.distill_weight, a.seed)
            penalties.append(term)
            epoch_hooks.append(start_epoch)
        if b.resample_negatives:
            epoch_hooks.append(lambda epoch: data.resample(a.seed, epoch, a))
        penalty = (lambda m: sum(p(m) for p in penalties)) if penalties else None
        on_epoch_start = (lambda epoch: [hook(epoch) for hook in epoch_hooks]) if epoch_hooks else None
        loop = EpochLoop(stage="adaptation", accelerator=acc, model=model, optimizer=optimizer, scheduler=scheduler,
                         n_train=n_train, batch_size=b.batch_size, epochs=b.epochs, seed=a.seed,
                         loss_fn=stage2.make_loss_fn(data, b),
                         evaluate=stage2.make_evaluate(data, b, module, acc, embedder), monitor=monitor,
                         higher_is_better=monitor != "val_loss", patience=patience,
                         min_delta=b.early_stopping_min_delta, checkpoint=save, checkpoint_every=b.checkpoint_every,
                         stop_after_epoch=stop_epoch if stop_stage == "adaptation" else None,
                         on_epoch_start=on_epoch_start, penalty_fn=penalty, show_progress=not a.quiet,
                         log_epochs=not a.quiet, keep_start=b.keep_start)
        rows = -(-min(b.batch_size, n_train) // acc.num_processes) * (1 + b.num_negatives)
        with self._threads(device, rows * config.query_dim * config.document_dim < 2**26):
            state = loop.run(state)
        head_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        info = {**extra, "epochs_run": state.epoch, "best_epoch": state.best_epoch, "monitor": monitor,
                "best_value": state.best_value, "stopped_early": state.stopped_early,
                "history": state.history, "seconds": round(state.seconds, 3)}
        extra["info"] = info
        save(state)
        return head_state, info

    # ------------------------------------------------------------------ outputs
    def _training_log(self, config, pair, infos, stages, timings, overrides, embedder) -> dict[str, Any]:
        import accelerate
        import transformers

        from .. import __version__

        a = self.args
        acc = self.accelerator
        d = pair.describe()
        return {
            "era_hf_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recipe": a.recipe,
            "recipe_overrides": overrides,
            "mode": a.mode,
            "label_ratio": a.label_ratio,
            "init": config.init,
            "seeds": {"seed": a.seed, "split_seed": a.split_seed, "alignment_sample_seed": a.alignment.sample_seed,
                      "python_numpy_torch": a.seed},
            "arguments": a.to_dict(),
            "models": {"query_encoder": {"id": d["query_encoder"]["model_id"],
                                         "revision": d["query_encoder"]["revision"],
                                         "requested_revision": d["query_encoder"]["requested_revision"]},
                       "document_encoder": {"id": d["document_encoder"]["model_id"],
                                            "revision": d["document_encoder"]["revision"],
                                            "requested_revision": d["document_encoder"]["requested_revision"]},
                       "query_format": d["query_format"], "document_query_format": d["document_query_format"],
                       "query_dim": config.query_dim, "document_dim": config.document_dim,
                       "head": config.head_type, "head_kwargs": dict(config.head_kwargs),
                       "anchor": bool(config.anchor)},
            "tasks": [{"name": i.name, "domain": getattr(i.task, "domain", ""), "source": getattr(i.task, "source", ""),
                       "revision": getattr(i.task, "revision", None), "n_documents": i.n_docs,
                       "split": i.split.to_dict(), "warnings": i.warnings} for i in infos],
            "stages": stages,
            "timings": timings,
            "embedding_cache": {"root": str(pair.cache.root) if pair.cache is not None else None,
                                **(pair.cache.stats if pair.cache is not None else {}),
                                "texts_encoded_here": embedder.encoded_texts,
                                "models_loaded": getattr(pair, "models_loaded", None)},
            "environment": {"num_processes": acc.num_processes, "device": str(acc.device),
                            "distributed_type": str(acc.distributed_type), "python": platform.python_version(),
                            "torch": torch.__version__, "transformers": transformers.__version__,
                            "accelerate": accelerate.__version__},
        }


def _head_with(base_head: torch.nn.Module, state: dict[str, torch.Tensor], device: Any) -> torch.nn.Module:
    """A copy of ``base_head`` on ``device`` holding ``state`` (``base_head`` itself is left as it is)."""
    head = copy.deepcopy(base_head).to(device)
    head.load_state_dict(state)
    return head


def _query_views(info: Any, qids: Sequence[str], embedder: Any, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's two inputs for ``qids``: the query encoder's and the document encoder's embeddings."""
    return tuple(torch.as_tensor(np.array(embedder.queries(info.task, qids, side)), device=device)
                 for side in ("query", "document"))


def plot_loss_curves(log: dict[str, Any], path: Path) -> None:
    """Per-stage loss curves (train / held-out), the best epoch marked, saved atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's) is left alone

    stages = [(name, s) for name, s in log.get("stages", {}).items() if isinstance(s, dict) and s.get("history")]
    fig = Figure(figsize=(6 * max(1, len(stages)), 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(stages)), squeeze=False)
    for ax, (name, s) in zip(axes[0], stages):
        hist = s["history"]
        for key in ("train_loss", "eval_loss", "val_loss"):
            pts = [(h["epoch"], h[key]) for h in hist if key in h]
            if pts:
                ax.plot(*zip(*pts), label=key, marker="." if len(pts) < 30 else None)
        if s.get("best_epoch") is not None:
            ax.axvline(s["best_epoch"], color="grey", linestyle="--", linewidth=1, label="best epoch")
        ax.set_title(f"{'stage 1' if name == 'alignment' else 'stage 2'}: {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
    if not stages:
        axes[0][0].text(0.5, 0.5, "no SGD epochs were run", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)  # the temp name has no .png suffix: format given
