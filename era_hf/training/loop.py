"""The epoch loop shared by both stages: global batches sharded over processes, early stopping,
NaN checks, resumable state and periodic checkpoints.

Multi-process equivalence: every process draws the same permutation (a generator seeded from
``(seed, stage, epoch)``) and takes the rows ``rank::world`` of every global batch. Each process's
loss is ``sum(per-item losses of its shard) * world / global_batch_size``; DDP averages gradients
over processes, so the update equals the one-process update on the whole global batch (also for
a short last batch or an empty shard).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import ERAError

logger = logging.getLogger("era_hf.training")

STAGE_IDS = {"alignment": 1, "adaptation": 2}


class TrainingStopped(Exception):
    """Raised after ``stop_after`` (a testing hook): the checkpoint is saved and ``--resume`` continues."""


@dataclass
class LoopState:
    """Everything needed to continue a stage exactly where it stopped."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    complete: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # the history travels as one JSON string: pickling thousands of small dicts per checkpoint is slow
        return {"epoch": self.epoch, "history": json.dumps(self.history), "best_value": self.best_value,
                "best_epoch": self.best_epoch, "best_state": self.best_state, "bad_epochs": self.bad_epochs,
                "stopped_early": self.stopped_early, "complete": self.complete, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopState":
        values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if isinstance(values.get("history"), str):
            values["history"] = json.loads(values["history"])
        return cls(**values)


def epoch_generator(seed: int, stage: str, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + STAGE_IDS[stage] * 10_007 + epoch) % (2**63))


def gather_rows(accelerator: Any, index: torch.Tensor, values: torch.Tensor, n_total: int) -> torch.Tensor:
    """Assemble per-item ``values`` (float, shape ``(m, ...)``) computed by each process for its ``index`` rows
    into one ``(n_total, ...)`` tensor on every process (``gather_for_metrics``)."""
    if accelerator is None or accelerator.num_processes == 1:
        out = torch.full((n_total, *values.shape[1:]), float("nan"), dtype=torch.float64, device=values.device)
        out[index] = values.double()
        return out
    world = accelerator.num_processes
    width = -(-n_total // world)
    pad_idx = torch.full((width,), -1, dtype=torch.long, device=accelerator.device)
    pad_val = torch.zeros((width, *values.shape[1:]), dtype=torch.float64, device=accelerator.device)
    pad_idx[: index.shape[0]] = index.to(accelerator.device)
    pad_val[: values.shape[0]] = values.double().to(accelerator.device)
    all_idx = accelerator.gather_for_metrics(pad_idx, use_gather_object=False)
    all_val = accelerator.gather_for_metrics(pad_val, use_gather_object=False)
    keep = all_idx >= 0
    out = torch.full((n_total, *values.shape[1:]), float("nan"), dtype=torch.float64, device=accelerator.device)
    out[all_idx[keep]] = all_val[keep]
    return out


def batch_mean_of_means(per_item: torch.Tensor, batch_size: int) -> float:
    """Mean over consecutive batches of the batch means (how the reference averages its losses)."""
    n = per_item.shape[0]
    if n == 0:
        return float("nan")
    means = [per_item[s:s + batch_size].mean() for s in range(0, n, batch_size)]
    return float(torch.stack(means).mean())


class EpochLoop:
    """Runs epochs of one stage (see the module docstring).

    Args:
        loss_fn: ``(model, shard_rows, batch_rows) -> per-item losses`` of the shard rows.
        evaluate: ``() -> {name: value}`` after each epoch (e.g. ``eval_loss``), same on every process.
        average: how the logged epoch train loss averages: ``"batches"`` (mean of per-batch means, the
            reference's stage 2) or ``"items"`` (mean over items, the reference's stage 1).
        monitor / higher_is_better / patience / min_delta: early stopping (``patience=None``: off,
            the best epoch is still recorded).
        keep_start: the starting weights (epoch 0) compete for "best" too, so the stage can end unchanged.
        checkpoint: ``(state) -> None``, called every ``checkpoint_every`` epochs and when stopping.
        on_epoch_start: ``(epoch) -> None`` before an epoch (e.g. resampling negatives).
        penalty_fn: ``(module) -> scalar`` added to every process's loss (not averaged away).
    """

    def __init__(self, *, stage: str, accelerator: Any, model: Any, optimizer: Any, scheduler: Any, n_train: int,
                 batch_size: int, epochs: int, seed: int, loss_fn: Callable[..., torch.Tensor],
                 evaluate: Callable[[], dict[str, float]], monitor: str | None, higher_is_better: bool = False,
                 patience: int | None = None, min_delta: float = 0.0,
                 checkpoint: Callable[[LoopState], None] | None = None, checkpoint_every: int = 10,
                 stop_after_epoch: int | None = None, on_epoch_start: Callable[[int], None] | None = None,
                 penalty_fn: Callable[[Any], torch.Tensor] | None = None, show_progress: bool = True,
                 log_epochs: bool = True, average: str = "batches", keep_start: bool = False) -> None:
        self.stage, self.acc, self.model, self.optimizer, self.scheduler = stage, accelerator, model, optimizer, scheduler
        self.n_train, self.batch_size, self.epochs, self.seed = n_train, batch_size, epochs, seed
        self.loss_fn, self.evaluate, self.monitor = loss_fn, evaluate, monitor
        self.higher_is_better, self.patience, self.min_delta = higher_is_better, patience, min_delta
        self.checkpoint, self.checkpoint_every, self.stop_after_epoch = checkpoint, checkpoint_every, stop_after_epoch
        self.on_epoch_start, self.penalty_fn = on_epoch_start, penalty_fn
        self.show_progress, self.log_epochs = show_progress, log_epochs
        self.average = average  # epoch train loss: "batches" (mean of batch means) or "items"
        self.keep_start = keep_start

    @property
    def module(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)

    def run(self, state: LoopState) -> LoopState:
        acc = self.acc
        world, rank = acc.num_processes, acc.process_index
        n, bs = self.n_train, self.batch_size
        n_batches = -(-n // bs)
        sizes = torch.tensor([min(bs, n - s) for s in range(0, n, bs)], dtype=torch.float64)
        if state.epoch == 0 and not state.history:
            record = {"epoch": 0, **self._evaluate()}
            state.history.append(record)
            self._check_finite(record, 0)
            if self.keep_start:
                self._track_best(state, record)
        bar = None
        redirect = contextlib.nullcontext()
        if self.show_progress and acc.is_main_process and state.epoch < self.epochs:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = tqdm(total=self.epochs, initial=state.epoch, desc=f"{self.stage}", unit="epoch", leave=False)
            redirect = logging_redirect_tqdm([logger])
        try:
            redirect.__enter__()
            while state.epoch < self.epochs and not state.stopped_early:
                epoch = state.epoch + 1
                start = time.perf_counter()
                if self.on_epoch_start is not None:
                    self.on_epoch_start(epoch)
                perm = torch.randperm(n, generator=epoch_generator(self.seed, self.stage, epoch))
                sums = torch.zeros(n_batches, dtype=torch.float64, device=acc.device)
                self.model.train()
                for b in range(n_batches):
                    batch = perm[b * bs:(b + 1) * bs].to(acc.device)
                    shard = batch[rank::world]
                    losses = self.loss_fn(self.model, shard, batch)
                    loss = losses.sum() * (world / batch.shape[0])
                    if self.penalty_fn is not None:
                        loss = loss + self.penalty_fn(self.module)
                    self.optimizer.zero_grad(set_to_none=True)
                    acc.backward(loss)
                    self.optimizer.step()
                    if self.scheduler is not None:
                        self.scheduler.step()
                    sums[b] = losses.detach().double().sum()
                if world > 1:
                    sums = acc.reduce(sums, reduction="sum")
                sums = sums.cpu()
                train_loss = float(sums.sum() / n) if self.average == "items" else float((sums / sizes).mean())
                record = {"epoch": epoch, "train_loss": train_loss, **self._evaluate()}
                if self.scheduler is not None:
                    record["lr"] = float(self.scheduler.get_last_lr()[0])
                self._check_finite(record, epoch)
                state.epoch = epoch
                state.seconds += time.perf_counter() - start
                record["seconds"] = round(time.perf_counter() - start, 4)
                state.history.append(record)
                self._track_best(state, record)
                if self.log_epochs and acc.is_main_process:
                    logger.info("%s epoch %d/%d: %s", self.stage, epoch, self.epochs,
                                "  ".join(f"{k}={v:.6g}" for k, v in record.items()
                                          if k not in ("epoch", "seconds") and isinstance(v, float)))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.endswith("loss")})
                stop_here = self.stop_after_epoch is not None and epoch >= self.stop_after_epoch
                last = epoch == self.epochs or state.stopped_early
                if self.checkpoint is not None and (epoch % self.checkpoint_every == 0 or stop_here) and not last:
                    self.checkpoint(state)
                if stop_here and not last:
                    raise TrainingStopped(f"stopped after {self.stage} epoch {epoch} (stop_after)")
        finally:
            redirect.__exit__(None, None, None)
            if bar is not None:
                bar.close()
        if self.patience is not None and state.best_state is not None:
            self.module.load_state_dict(state.best_state)
            if acc.is_main_process:
                logger.info("%s: restored the best weights (epoch %s, %s=%.6g)", self.stage, state.best_epoch,
                            self.monitor, state.best_value)
        state.complete = True
        return state

    def _evaluate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            return {k: float(v) for k, v in self.evaluate().items()}

    def _check_finite(self, record: dict[str, Any], epoch: int) -> None:
        bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
        if not bad:
            params_ok = all(bool(torch.isfinite(p).all()) for p in self.module.parameters())
            if params_ok:
                return
            bad = {"weights": "NaN/inf"}
        raise ERAError(f"stage {self.stage!r}: non-finite value at epoch {epoch} ({bad}); training stopped and "
                       f"no weights were saved for this epoch. Try a lower learning rate "
                       f"(--{self.stage}.lr) or check the embeddings.")

    def _track_best(self, state: LoopState, record: dict[str, Any]) -> None:
        if self.monitor is None or self.monitor not in record:
            return
        value = record[self.monitor]
        if state.best_value is None:
            improved = True
        elif self.higher_is_better:
            improved = value > state.best_value + self.min_delta
        else:
            improved = value < state.best_value - self.min_delta
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = value, record["epoch"], 0
            if self.patience is not None:
                state.best_state = {k: v.detach().clone().cpu() for k, v in self.module.state_dict().items()}
        else:
            state.bad_epochs += 1
            if self.patience is not None and state.bad_epochs >= self.patience:
                state.stopped_early = True
                if self.acc.is_main_process:
                    logger.info("%s: early stopping at epoch %d (best epoch %s, %s=%.6g)", self.stage,
                                record["epoch"], state.best_epoch, self.monitor, state.best_value)
