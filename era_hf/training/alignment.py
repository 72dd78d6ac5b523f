"""Stage 1: self-supervised alignment on identical texts.

The head learns ``head(query-encoder(x)) ≈ document-encoder(x)`` for texts ``x`` embedded by
both encoders (:func:`era_hf.training.data.build_alignment_data`). Two ways to get there:

* **SGD** (the reference): AdamW on the per-item alignment loss (cosine / mse / smooth_l1) from
  PyTorch's default init, ``epochs`` epochs, no schedule, final weights kept.
* **Closed form** (ours, ``init="ridge"|"procrustes"``): ridge least squares with bias
  (``λ`` relative to ``trace(XcᵀXc)/dim``, chosen on the held-out pairs when ``"auto"``), or
  orthogonal Procrustes (equal dims) — seconds instead of epochs; optionally refined by
  ``refine_epochs`` of SGD. The linear part of every head type can take it (linear: ``proj``;
  mlp: its linear branch; low_rank_residual: ``w0`` + bias).

Anchored heads (``output = normalize(anchor + project(x))``): for identical texts the anchor
is the document encoder's embedding of ``x`` — exactly the target — so the zero map is already
optimal and stage 1 has nothing to learn. ``anchored="skip"`` (default) skips it;
``anchored="ensemble"`` fits ``project`` like an unanchored head, so the model outputs
``normalize(anchor + aligned)``: an average of the cheap embedding and the aligned strong one;
``anchored="score"`` (ours) writes a map that reproduces the strong encoder's scores over documents
(:func:`score_preserving_init`), optionally refined by listwise distillation (:func:`distilled_score_init`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ERAError
from .arguments import AlignmentArguments
from .losses import alignment_loss, listwise_distillation_loss


def loss_values(name: str, pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-item alignment loss of L2-normalised predictions."""
    return alignment_loss(name)(pred, target, beta=beta)


def make_loss_fn(data: Any, args: AlignmentArguments):
    """``(model, shard_rows, batch_rows) -> per-item losses`` for the epoch loop."""

    def loss_fn(model: Any, shard: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        pred = model(data.x_train[shard])
        return loss_values(args.loss, pred, data.y_train[shard], args.smooth_l1_beta)

    return loss_fn


def make_evaluate(data: Any, args: AlignmentArguments, module: Any, accelerator: Any):
    """Eval loss on the held-out pairs (mean over items, like the reference), the same on every process."""
    from .loop import gather_rows

    def evaluate() -> dict[str, float]:
        n = data.x_eval.shape[0]
        rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        rows = torch.arange(n, device=data.x_eval.device)[rank::world]
        values = loss_values(args.loss, module(data.x_eval[rows]), data.y_eval[rows], args.smooth_l1_beta)
        per_item = gather_rows(accelerator, rows, values, n)
        return {"eval_loss": float(per_item.mean())}

    return evaluate


# ---------------------------------------------------------------------- closed form
def _centered(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    return x - mx, y - my, mx, my


def heldout_loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss: str = "cosine",
                 beta: float = 1.0) -> float:
    """Mean alignment loss of the linear map ``normalize(x w + b)`` against ``y``."""
    pred = F.normalize(x.double() @ w + b, dim=-1)
    return float(loss_values(loss, pred, y.double(), beta).mean())


def heldout_cosine(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return 1.0 - heldout_loss(w, b, x, y, "cosine")


def ridge_fit(x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor, ridge_lambda: Any = "auto",
              grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), loss: str = "cosine",
              beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Ridge regression with bias of ``y`` on ``x``: returns ``(W (p, d), b (d,), info)`` in float64.

    ``λ = ridge_lambda * trace(XcᵀXc) / p`` (scale-free). With ``"auto"`` every grid value is tried and
    the one with the lowest held-out loss is kept; when the best sits at an end of the grid, the grid
    is extended by factors of 10 (up to 4 steps) while the held-out loss improves. One
    decomposition serves all values: the thin SVD of ``Xc`` when there are fewer texts than
    dims, else the eigendecomposition of ``XcᵀXc``. Runs on the tensors' device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = F.normalize(torch.randn(200, 8, generator=g), dim=-1); a = torch.randn(8, 4, generator=g)
        >>> w, b, info = ridge_fit(x[:180], F.normalize(x[:180] @ a, dim=-1), x[180:], F.normalize(x[180:] @ a, dim=-1))
        >>> info["heldout_cosine"] > 0.95
        True
    """
    xc, yc, mx, my = _centered(x, y)
    n, p = xc.shape
    if n < p:  # XcᵀXc has rank <= n: decompose the small side
        u, sv, vh = torch.linalg.svd(xc, full_matrices=False)
        basis, evals, proj = vh.T, sv.pow(2), sv[:, None] * (u.T @ yc)
    else:
        evals, basis = torch.linalg.eigh(xc.T @ xc)
        evals = evals.clamp(min=0)
        proj = basis.T @ (xc.T @ yc)
    scale = float(evals.sum()) / p if p else 1.0
    scale = scale if scale > 0 else 1.0

    def solve(alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        w = basis @ (proj / (evals + alpha * scale)[:, None])
        return w, my - mx @ w

    def score(alpha: float) -> float:
        if not x_eval.shape[0]:
            return float("nan")
        w, b = solve(alpha)
        return heldout_loss(w, b, x_eval, y_eval, loss, beta)

    candidates = sorted(float(a) for a in grid) if ridge_lambda == "auto" else [float(ridge_lambda)]
    results = {a: score(a) for a in candidates}
    if ridge_lambda == "auto" and all(math.isfinite(v) for v in results.values()):
        for step in (10.0, 0.1):
            for _ in range(4):
                best = min(results, key=results.get)
                edge = max(results) if step > 1 else min(results)
                if best != edge:
                    break
                results[edge * step] = score(edge * step)
                if results[edge * step] >= results[best]:
                    break
    finite = {a: v for a, v in results.items() if math.isfinite(v)}
    alpha = min(finite, key=finite.get) if finite else candidates[0]
    w, b = solve(alpha)
    info = {"method": "ridge", "ridge_lambda": alpha, "lambda_absolute": alpha * scale,
            "selected_by": "held-out loss" if ridge_lambda == "auto" else "given",
            "grid": {str(a): results[a] for a in sorted(results)}, "heldout_loss": results[alpha],
            "heldout_cosine": heldout_cosine(w, b, x_eval, y_eval) if x_eval.shape[0] else None}
    return w, b, info


def procrustes_fit(x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor,
                   y_eval: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Orthogonal Procrustes with bias (centred): ``W = U Vᵀ`` from ``svd(XcᵀYc + εI)``; needs equal dims."""
    if x.shape[1] != y.shape[1]:
        raise ERAError(f"procrustes init needs equal dims; the query encoder gives {x.shape[1]}-d and the document "
                       f"encoder {y.shape[1]}-d embeddings (use --alignment.init ridge)")
    xc, yc, mx, my = _centered(x, y)
    m = xc.T @ yc
    # With fewer texts than dims, XcᵀYc is rank-deficient and the rotation of its null space is arbitrary;
    # a tiny identity term settles those directions on the identity (exact when both spaces coincide).
    m = m + 1e-6 * (float(m.diagonal().abs().sum()) / m.shape[0] or 1.0) * torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    u, _, vt = torch.linalg.svd(m)
    w = u @ vt
    b = my - mx @ w
    info = {"method": "procrustes",
            "heldout_cosine": heldout_cosine(w, b, x_eval, y_eval) if x_eval.shape[0] else None}
    return w, b, info


def apply_linear_init(head: torch.nn.Module, w: torch.Tensor, b: torch.Tensor) -> None:
    """Write a linear map ``x -> x w + b`` into the linear part of a head."""
    from ..heads import LinearHead, LowRankResidualHead, MLPHead

    with torch.no_grad():
        if isinstance(head, LinearHead):
            head.proj.weight.copy_(w.T.to(head.proj.weight))
            head.proj.bias.copy_(b.to(head.proj.bias))
        elif isinstance(head, MLPHead):
            head.linear.weight.copy_(w.T.to(head.linear.weight))
            head.linear.bias.copy_(b.to(head.linear.bias))
            head.down.weight.zero_()
            head.down.bias.zero_()
        elif isinstance(head, LowRankResidualHead):
            head.w0.copy_(w.to(head.w0))
            head.bias.copy_(b.to(head.bias))
            head.b.zero_()
        else:
            raise ERAError(f"closed-form init does not know head {type(head).__name__}")


def closed_form_init(head: torch.nn.Module, data: Any, args: AlignmentArguments) -> dict[str, Any]:
    """Fit ``args.init`` (ridge / procrustes) on the stage-1 train pairs and write it into ``head``."""
    x, y, xe, ye = (t.detach() for t in (data.x_train, data.y_train, data.x_eval, data.y_eval))  # on their device
    if args.init == "ridge":
        w, b, info = ridge_fit(x, y, xe, ye, args.ridge_lambda, args.ridge_grid, args.loss, args.smooth_l1_beta)
    elif args.init == "procrustes":
        w, b, info = procrustes_fit(x, y, xe, ye)
    else:
        raise ERAError(f"unknown closed-form init {args.init!r}")
    apply_linear_init(head, w.float(), b.float())
    return info


def query_clarity(queries: torch.Tensor, corpus: torch.Tensor, k: int = 10) -> float:
    """How far each query's ``k`` best documents stand out of the whole corpus, averaged over queries.

    Per query: ``(mean of the k best scores - mean score) / std of the scores`` over every document. It is
    free of any shift or scale of one query's scores, so it compares rankings from different query vectors
    (no labels needed). Used by ``score_weight_guard='clarity'``.

    Example:
        >>> q, d = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
        >>> round(query_clarity(q, d, k=1), 3)
        0.926
    """
    scores = queries.float() @ corpus.float().T
    top = scores.topk(min(k, scores.shape[1]), dim=1).values.mean(dim=1)
    return float(((top - scores.mean(dim=1)) / scores.std(dim=1).clamp_min(1e-12)).mean())


def paired_standard_error(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Standard error of ``macro(a) - macro(b)`` for per-query values of the same queries, per task.

    Tasks are strata of the macro mean (each weighs ``1 / n_tasks``); within a task the per-query
    differences give the variance (a task with one query counts its squared difference).

    Example:
        >>> round(paired_standard_error([np.array([0.5, 0.7, 0.9])], [np.array([0.5, 0.5, 0.5])]), 4)
        0.1155
    """
    variance = 0.0
    for x, y in zip(a, b):
        d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
        variance += (d.var(ddof=1) if d.size > 1 else float(d[0] ** 2)) / d.size
    return math.sqrt(variance) / len(a)


def pick_by_validation(candidates: Sequence[float], score: Callable[[float], Sequence[np.ndarray]],
                       margin_se: float = 0.0, what: str = "weight") -> tuple[float, dict[str, Any]]:
    """The candidate (a weight of the strong encoder's part, 0 = the cheap baseline) with the best macro
    validation nDCG@10 (``score(c)``: per-task arrays of per-query values with candidate ``c`` in place; ties: the
    smaller candidate).

    With ``margin_se = z > 0``: the smallest candidate within ``z`` standard errors (:func:`paired_standard_error`
    of the best against candidate 0, which is then scored too) of the best, so the cheap baseline stays unless the
    labels show a gain beyond their noise. Returns it and a record: ``val_ndcg@10`` per candidate, ``margin`` when
    ``z > 0``, ``gain_over_weight_0`` (gain and standard error) when 0 was scored and another candidate won, and the
    suffix of ``selected_by`` the margin adds.

    Example:
        >>> values = {0.0: [np.array([0.5, 0.5])], 1.0: [np.array([0.6, 0.5])]}
        >>> pick_by_validation([0.0, 1.0], values.__getitem__)[0]
        1.0
    """
    per_query = {c: score(c) for c in (sorted({0.0, *candidates}) if margin_se else candidates)}

    def macro(c: float) -> float:
        return float(np.mean([np.mean(v) for v in per_query[c]]))

    scores = {str(c): macro(c) for c in candidates}
    best = max(candidates, key=lambda c: (scores[str(c)], -c)) if candidates else 0.0
    out: dict[str, Any] = {"val_ndcg@10": scores, "selected_by": ""}
    if margin_se and candidates:
        se = paired_standard_error(per_query[best], per_query[0.0])
        floor = scores[str(best)] - margin_se * se
        out["margin"] = {"best": best, "standard_error": se, "margin_se": margin_se}
        best = min(c for c in candidates if scores[str(c)] >= floor)
        out["selected_by"] = f", the smallest {what} within {margin_se:g} standard error(s) of the best"
    if best and 0.0 in per_query:  # how sure the labels are that the pick beats the cheap baseline
        out["gain_over_weight_0"] = {"gain": scores[str(best)] - macro(0.0),
                                     "standard_error": paired_standard_error(per_query[best], per_query[0.0])}
    return best, out


def _score_map(head: torch.nn.Module, data: Any, args: AlignmentArguments) -> tuple[torch.Tensor, dict[str, Any]]:
    """``Mᵀ`` for the raw score-preserving map ``M`` (``x ≈ y M + b`` by ridge): shape (query dim, document dim),
    on the head's device, so that ``project(x) = x Mᵀ`` once written into the head's linear part
    (:func:`set_linear_part`)."""
    x, y, xe, ye = (t.detach() for t in (data.x_train, data.y_train, data.x_eval, data.y_eval))
    m, _, info = ridge_fit(y, x, ye, xe, args.ridge_lambda, args.ridge_grid, args.loss, args.smooth_l1_beta)
    return m.float().T.to(next(head.parameters()).device), info


def set_linear_part(head: torch.nn.Module, w: torch.Tensor) -> None:
    """Write ``x -> x w`` (no bias) into the head's linear part; its nonlinear part (if any) is switched off."""
    apply_linear_init(head, w, torch.zeros(w.shape[1], device=w.device))


def score_preserving_init(head: torch.nn.Module, data: Any, args: AlignmentArguments,
                          val_ndcg: Callable[[torch.nn.Module], Sequence[np.ndarray]],
                          selected_by: str = "validation nDCG@10",
                          guard: Callable[[torch.nn.Module], float] | None = None) -> dict[str, Any]:
    """Anchored heads, ``anchored="score"`` (ours): keep the strong encoder's *scores*, not its coordinates.

    Ridge-regress the query encoder's embeddings of the alignment texts on the document encoder's
    (``x ≈ y M + b``). For a query ``q`` and a document ``d`` of the index, ``q · (y_d M) = (q Mᵀ) · y_d``:
    so ``project(q) = c · q Mᵀ`` maps ``q`` to the document-space vector whose inner products with indexed
    documents best reproduce the query encoder's own query-document scores. The head outputs
    ``normalize(anchor + c · q Mᵀ)``: a query-side fusion of the cheap encoder's and the strong encoder's
    rankings. ``c = w / mean‖x Mᵀ‖``, ``w`` from ``args.score_weights`` chosen on validation nDCG@10
    (``val_ndcg``: head -> per-task arrays of per-query nDCG@10; the macro mean decides; ``w = 0`` is the
    cheap baseline, so the fusion is only kept where validation says it helps). With
    ``args.score_weight_margin_se = z > 0`` the smallest weight within ``z`` standard errors
    (:func:`paired_standard_error` of the best weight against ``w = 0``) of the best is taken instead.
    ``guard`` (``head -> float``, e.g. :func:`query_clarity` on the index's unlabelled queries) removes the
    weights it scores below ``w = 0`` from the candidates before validation picks. When a weight other than
    ``w = 0`` is picked and ``w = 0`` was validated, the record gives the gain over it and its standard error.
    """
    weight, info = _score_map(head, data, args)
    scale = float((data.x_train.detach().float().to(weight.device) @ weight).norm(dim=-1).mean()) or 1.0

    def set_weight(w: float) -> None:
        set_linear_part(head, weight * (w / scale))

    guarded: dict[str, float] = {}
    for w in sorted({0.0, *args.score_weights}) if guard is not None else ():
        set_weight(w)
        guarded[str(w)] = guard(head)
    candidates = [w for w in args.score_weights if guard is None or w == 0 or guarded[str(w)] >= guarded["0.0"]]
    def scored(w: float) -> Sequence[np.ndarray]:
        set_weight(w)
        return val_ndcg(head)

    best, out = pick_by_validation(candidates, scored, args.score_weight_margin_se, "weight")
    out = {"method": "score", **out}
    set_weight(best)
    out.update({"weight": best, "scale": scale, "ridge_lambda": info["ridge_lambda"],
                "heldout_cosine": info["heldout_cosine"], "selected_by": selected_by + out.pop("selected_by")})
    if guard is not None:
        out["guard"] = {"clarity": guarded, "kept": [str(w) for w in candidates]}
    return out


# ---------------------------------------------------------------------- distillation
def distilled_score_init(head: torch.nn.Module, data: Any, groups: Sequence[Any], args: AlignmentArguments,
                         seed: int) -> dict[str, Any]:
    """Anchored score map refined by listwise distillation (ours, ``args.distill_steps > 0``; no labels).

    The score-preserving map (see :func:`score_preserving_init`) only approximates the query encoder's scores
    in the document space, evenly over all documents. Ranking needs them right at the top of each list. So the
    head starts at ``normalize(anchor + λ · q Mᵀ)`` (``λ = args.distill_teacher_weight``: initially a linear
    stand-in for the fused scores) and Adam then minimises, per query, the KL divergence between softmaxes over
    the task's documents (:func:`~era_hf.training.losses.listwise_distillation_loss`): the teacher is the fusion
    ``cheap(q)·cheap(d) + λ · strong(q)·strong(d)``, which needs the strong encoder's embeddings of the documents
    at training time only; the student is ``head(q)·cheap(d)``, what the cheap index can compute. Queries are
    documents (each left out of its own list) and the tasks' unlabelled non-test queries (``groups``:
    :func:`~era_hf.training.data.build_distillation_data`). Each step draws a task uniformly, then
    ``distill_batch_size`` of its queries; ``distill_steps`` steps per task in all. No weight is picked on labels.
    """
    weight, info = _score_map(head, data, args)
    set_linear_part(head, weight * args.distill_teacher_weight)
    return {"method": "score+distill", "weight": args.distill_teacher_weight, "ridge_lambda": info["ridge_lambda"],
            "heldout_cosine": info["heldout_cosine"], "distillation": distill(head, groups, args, seed)}


def distillation_batch_loss(head: torch.nn.Module, groups: Sequence[Any], args: AlignmentArguments,
                            generator: torch.Generator) -> torch.Tensor:
    """Mean listwise distillation loss of ``head`` on one batch: a task drawn uniformly, then
    ``distill_batch_size`` of its queries (with replacement), each ranking the task's documents."""
    g = groups[int(torch.randint(len(groups), (1,), generator=generator))]
    rows = torch.randint(g.n_queries, (min(args.distill_batch_size, g.n_queries),), generator=generator)
    rows = rows.to(g.queries.device)
    x, anchor, own = g.queries[rows], g.anchors[rows], g.own_doc[rows]
    with torch.no_grad():
        teacher = anchor @ g.docs.T + args.distill_teacher_weight * (x @ g.docs_strong.T)
        if g.lexical is not None:
            teacher = teacher + args.distill_lexical_weight * args.distill_temperature * g.lexical[rows]
    exclude = torch.zeros_like(teacher, dtype=torch.bool)
    is_doc = (own >= 0).nonzero()[:, 0]
    exclude[is_doc, own[is_doc]] = True
    return listwise_distillation_loss(head(x, anchor) @ g.docs.T, teacher, args.distill_temperature, exclude).mean()


def distill(head: torch.nn.Module, groups: Sequence[Any], args: AlignmentArguments, seed: int) -> dict[str, Any]:
    """Run the listwise distillation of :func:`distilled_score_init` on ``head`` in place; returns its record."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=args.distill_lr)
    losses = []
    start = time.perf_counter()
    head.train()
    for _ in range(args.distill_steps * len(groups)):
        loss = distillation_batch_loss(head, groups, args, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    head.eval()
    if not all(bool(torch.isfinite(p).all()) for p in head.parameters()):
        raise ERAError("the distillation diverged (non-finite head weights): lower alignment.distill_lr")
    tenth = max(1, len(losses) // 10)
    return {"steps": len(losses), "teacher_weight": args.distill_teacher_weight,
            "lexical_weight": args.distill_lexical_weight,
            "temperature": args.distill_temperature, "lr": args.distill_lr, "batch_size": args.distill_batch_size,
            "loss_first_tenth": float(np.mean(losses[:tenth])), "loss_last_tenth": float(np.mean(losses[-tenth:])),
            "tasks": {g.name: {"queries": g.n_queries, "documents": int(g.docs.shape[0])} for g in groups},
            "seconds": round(time.perf_counter() - start, 3)}
