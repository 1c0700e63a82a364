"""Training engines for the AdUE head: one config at a time, or many configs in one batched run.

Both engines minimise, per config ``k = (lr, epochs, alpha, beta, l2sp)``, the same loss

    L_k = BCE(U~, e) + alpha * mean((U - U_SR)^2) + beta * R(theta_k)
    R   = sum_j (theta_kj - theta_init,j)^2          (l2sp="sum", the paper)
    R   = (1/P) sum_j (theta_kj - theta_init,j)^2    (l2sp="mean", P = number of head parameters)

with Adam and torch's ``OneCycleLR`` (``max_lr = lr``, defaults otherwise: 30 % warm-up, cosine
annealing, beta1 cycled 0.95 -> 0.85 -> 0.95), batches of ``batch_size`` rows in the order of one
``torch.randperm`` per epoch from a ``torch.Generator`` seeded with ``seed`` (the last batch may
be smaller), float32, the head in eval mode (no dropout: deterministic).

- :func:`train_sequential` trains one ``nn.Module`` per config with ``torch.optim.Adam`` and
  ``torch.optim.lr_scheduler.OneCycleLR`` -- the plain reference loop.
- :func:`train_batched` trains many configs together. The heads' parameters are stacked along a
  leading config axis, ``(K, ...)``, so each step is one GEMM for all configs' logits and one for
  all their gradients. Configs sharing ``(lr, epochs)`` share the one-cycle schedule, so they form
  one Adam param group (fused Adam where torch supports it), whose ``lr`` / ``beta1`` are set at
  every step from the schedule computed by :func:`onecycle_schedule` (the formula of torch's
  ``OneCycleLR``, tested equal to it). All configs see the same batches; a group whose epochs are
  done leaves the forward pass (it costs nothing more) and is handed to ``on_done``. The L2-SP
  gradient ``2 beta_k (theta_k - theta_init)`` is added in closed form. Very large stacks are
  trained in chunks of configs (same batches, so the results do not depend on the chunking).

The two engines agree to float32 rounding (tests compare per-config weights and scores).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from adue.heads import ClassifierHead
from adue.methods._smoothmax import adue_score_parts

__all__ = [
    "TrainConfig",
    "HeadArch",
    "onecycle_schedule",
    "loss_terms",
    "l2sp",
    "l2sp_weight",
    "L2SP_MODES",
    "head_params",
    "stack_forward",
    "stack_uncertainty",
    "build_head",
    "train_sequential",
    "train_batched",
]

# Memory budget of one batched chunk (parameters, gradients and Adam moments of its configs).
_CHUNK_BYTES = 1 << 30
# Linear stacks up to this many parameters are concatenated into one GEMM per step.
_CAT_MAX = 1 << 20
# Activations per block when scoring a stack of heads (rows x K x width floats).
_SCORE_ELEMS = 1 << 24


#: How L2-SP aggregates over the head's parameters: the paper's sum, or the mean (its scale
#: then does not grow with the head's size C x d).
L2SP_MODES = ("sum", "mean")


@dataclass(frozen=True)
class TrainConfig:
    """One hyper-parameter configuration of the AdUE head."""

    lr: float
    epochs: int
    alpha: float
    beta: float
    l2sp: str = "sum"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeadArch:
    """Shape of a head: ``z (d) -> [dense (hidden), act] -> out_proj (out)``.

    ``output="smoothmax"``: the outputs are class logits, ``U = 1 - SmoothMax(softmax)``;
    ``output="sigmoid"``: one output ``s``, ``U = sigmoid(s)`` (the random-linear ablation).
    """

    in_features: int
    out_features: int
    hidden: int | None
    activation: str
    out_bias: bool
    output: str

    @classmethod
    def of(cls, head: ClassifierHead, output: str) -> HeadArch:
        return cls(
            in_features=head.in_features,
            out_features=head.num_classes,
            hidden=head.hidden_features,
            activation=head.activation_name,
            out_bias=head.out_proj.bias is not None,
            output=output,
        )


# ----------------------------------------------------------------- schedule
def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def onecycle_schedule(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> list[tuple[float, float]]:
    """``(lr, beta1)`` used at optimiser steps ``0 .. total_steps-1`` by torch's ``OneCycleLR``.

    Two-phase cosine schedule (``three_phase=False``), ``cycle_momentum=True``, as in
    ``torch.optim.lr_scheduler.OneCycleLR`` with its defaults.
    """
    initial = max_lr / div_factor
    min_lr = initial / final_div_factor
    phases = (
        (float(pct_start * total_steps) - 1, initial, max_lr, max_momentum, base_momentum),
        (total_steps - 1, max_lr, min_lr, base_momentum, max_momentum),
    )
    out = []
    for step in range(total_steps):
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                out.append((_anneal_cos(lr0, lr1, pct), _anneal_cos(m0, m1, pct)))
                break
            start = end
    return out


# --------------------------------------------------------------------- loss
def loss_terms(
    out: torch.Tensor, errors: torch.Tensor, u_sr: torch.Tensor, *, lam: float, output: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-config BCE and softmax-response regulariser, each of shape (K,).

    ``out`` (K, B, C) logits (``output="smoothmax"``) or (K, B, 1) scores (``"sigmoid"``);
    ``errors`` (B,) in {0, 1} (1 = the original model is wrong); ``u_sr`` (B,) = ``1 - max p``.

    ``bce_k = -mean_b [e log U~ + (1 - e) log(1 - U~)]`` (``U~`` = ``U`` computed without
    cancellation, see :mod:`adue.methods._smoothmax`; ``U = sigmoid(s)`` for ``"sigmoid"``),
    ``reg_k = mean_b (U - U_SR)^2``.
    """
    if output == "sigmoid":
        s = out[..., 0]
        u = torch.sigmoid(s)
        log_pu = F.logsigmoid(s)
        log_1m = F.logsigmoid(-s)
    else:
        u, log_pu, log_1m = adue_score_parts(out, lam)
    bce = -(errors * log_pu + (1.0 - errors) * log_1m).mean(dim=-1)
    reg = ((u - u_sr) ** 2).mean(dim=-1)
    return bce, reg


def l2sp_weight(cfg: TrainConfig, n_params: int) -> float:
    """Coefficient of ``sum_j (theta_j - theta_init,j)^2`` in the loss: ``beta`` for
    ``l2sp="sum"``, ``beta / n_params`` for ``l2sp="mean"``."""
    return cfg.beta / n_params if cfg.l2sp == "mean" else cfg.beta


def l2sp(params: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum_params ||theta_k - theta_init||^2`` per config: stacked (K, ...) params -> (K,)."""
    total = None
    for name, p in params.items():
        d = (p - init[name]).flatten(1)
        term = (d * d).sum(dim=1)
        total = term if total is None else total + term
    return total


# ------------------------------------------------------------ stacked heads
def head_params(head: ClassifierHead) -> dict[str, torch.Tensor]:
    """The head's parameters by name, detached copies (float32)."""
    return {n: p.detach().clone().float() for n, p in head.named_parameters()}


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(x)
    if name == "gelu":
        return F.gelu(x)
    if name == "relu":
        return torch.relu(x)
    return x


def stack_forward(params: dict[str, torch.Tensor], arch: HeadArch, z: torch.Tensor) -> torch.Tensor:
    """Outputs of K stacked heads on the same rows: params (K, ...), z (B, d) -> (K, B, out)."""
    w = params["out_proj.weight"]
    k = w.shape[0]
    b_rows = z.shape[0]
    if arch.hidden is None:
        flat = w.reshape(k * arch.out_features, arch.in_features).t()
        if arch.out_bias:
            out = torch.addmm(params["out_proj.bias"].reshape(-1), z, flat)
        else:
            out = z @ flat
        return out.reshape(b_rows, k, arch.out_features).transpose(0, 1)
    w1 = params["dense.weight"].reshape(k * arch.hidden, arch.in_features).t()
    h = torch.addmm(params["dense.bias"].reshape(-1), z, w1)
    h = _act(arch.activation, h).reshape(b_rows, k, arch.hidden).transpose(0, 1)  # (K, B, H)
    wt = w.transpose(1, 2)  # (K, H, out)
    if arch.out_bias:
        return torch.baddbmm(params["out_proj.bias"].unsqueeze(1), h, wt)
    return torch.bmm(h, wt)


@torch.no_grad()
def stack_uncertainty(
    params: dict[str, torch.Tensor], arch: HeadArch, z: torch.Tensor, *, lam: float
) -> torch.Tensor:
    """Scores ``U`` of K stacked heads on rows ``z`` (n, d): (K, n) float64 (higher = worse)."""
    k = params["out_proj.weight"].shape[0]
    width = arch.out_features + (arch.hidden or 0)
    rows = max(256, _SCORE_ELEMS // max(1, k * width))  # bounds the (rows, K, width) activations
    outs = []
    for s in range(0, z.shape[0], rows):
        out = stack_forward(params, arch, z[s : s + rows]).double()
        if arch.output == "sigmoid":
            outs.append(torch.sigmoid(out[..., 0]))
        else:
            outs.append(adue_score_parts(out, lam)[0])
    return torch.cat(outs, dim=1)


def build_head(
    arch: HeadArch, params: dict[str, torch.Tensor], template: ClassifierHead
) -> ClassifierHead:
    """A :class:`ClassifierHead` like ``template`` holding ``params`` (unstacked), eval mode."""
    head = copy.deepcopy(template).cpu().float()
    with torch.no_grad():
        for n, p in head.named_parameters():
            p.copy_(params[n].detach().cpu())
    return head.eval()


# ------------------------------------------------------------------ engines
OnDone = Callable[[list[int], dict[str, torch.Tensor]], None]


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def train_sequential(
    init: ClassifierHead,
    arch: HeadArch,
    z: torch.Tensor,
    errors: torch.Tensor,
    u_sr: torch.Tensor,
    configs: Sequence[TrainConfig],
    *,
    lam: float,
    batch_size: int,
    seed: int,
    on_done: OnDone,
) -> None:
    """Train each config alone (``nn.Module`` + ``torch.optim.Adam`` + ``OneCycleLR``).

    ``z`` (n, d) float32, ``errors`` / ``u_sr`` (n,) float32, all on the training device.
    ``on_done([i], params)`` receives each config's final parameters stacked with K = 1.
    """
    n = z.shape[0]
    spe = _steps_per_epoch(n, batch_size)
    n_params = sum(p.numel() for p in init.parameters())
    for i, cfg in enumerate(configs):
        head = copy.deepcopy(init).to(z.device).float().eval()
        anchor = [p.detach().clone() for p in head.parameters()]
        weight = l2sp_weight(cfg, n_params)
        if cfg.epochs > 0:
            opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.lr, total_steps=cfg.epochs * spe
            )
            gen = torch.Generator().manual_seed(seed)
            for _ in range(cfg.epochs):
                perm = torch.randperm(n, generator=gen).to(z.device)
                for s in range(0, n, batch_size):
                    idx = perm[s : s + batch_size]
                    out = head(torch.index_select(z, 0, idx)).unsqueeze(0)
                    bce, reg = loss_terms(
                        out,
                        errors.index_select(0, idx),
                        u_sr.index_select(0, idx),
                        lam=lam,
                        output=arch.output,
                    )
                    loss = bce[0] + cfg.alpha * reg[0]
                    if weight != 0:
                        pen = sum(
                            ((p - a) ** 2).sum()
                            for p, a in zip(head.parameters(), anchor, strict=True)
                        )
                        loss = loss + weight * pen
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
        on_done([i], {n_: p.detach().unsqueeze(0) for n_, p in head.named_parameters()})


def _make_adam(groups: list[dict]) -> torch.optim.Optimizer:
    try:
        return torch.optim.Adam(groups, fused=True)
    except (RuntimeError, ValueError, TypeError):  # fused kernel not available on this device
        return torch.optim.Adam(groups)


def _chunks(order: list[int], per_config_bytes: int) -> list[list[int]]:
    size = max(1, _CHUNK_BYTES // max(per_config_bytes, 1))
    return [order[s : s + size] for s in range(0, len(order), size)]


def train_batched(
    init: ClassifierHead,
    arch: HeadArch,
    z: torch.Tensor,
    errors: torch.Tensor,
    u_sr: torch.Tensor,
    configs: Sequence[TrainConfig],
    *,
    lam: float,
    batch_size: int,
    seed: int,
    on_done: OnDone,
) -> None:
    """Train all ``configs`` together on stacked parameters (see the module docstring).

    Same inputs and callback as :func:`train_sequential`; ``on_done(indices, params)`` receives
    the final parameters of a finished group of configs stacked as (len(indices), ...).
    """
    n = z.shape[0]
    spe = _steps_per_epoch(n, batch_size)
    device = z.device
    theta0 = {k: v.to(device) for k, v in head_params(init).items()}
    n_params = sum(v.numel() for v in theta0.values())
    width = arch.hidden if arch.hidden is not None else arch.out_features
    per_config = 4 * (5 * n_params + 4 * batch_size * (width + arch.out_features))

    idle = [i for i, c in enumerate(configs) if c.epochs == 0]
    if idle:
        on_done(
            idle, {k: v.unsqueeze(0).expand(len(idle), *v.shape).clone() for k, v in theta0.items()}
        )
    # Longest runs first so each chunk holds similar lengths; order does not change results.
    order = sorted(
        (i for i, c in enumerate(configs) if c.epochs > 0),
        key=lambda i: (-configs[i].epochs, -configs[i].lr, i),
    )
    for chunk in _chunks(order, per_config):
        _train_chunk(
            chunk,
            configs,
            theta0,
            arch,
            z,
            errors,
            u_sr,
            lam=lam,
            batch_size=batch_size,
            seed=seed,
            spe=spe,
            on_done=on_done,
        )


def _make_groups(
    chunk: list[int],
    configs: Sequence[TrainConfig],
    theta0: dict[str, torch.Tensor],
    spe: int,
) -> list[dict]:
    """One group per ``(lr, epochs)`` of the chunk: stacked params, alpha and 2 * L2-SP weight."""
    device = next(iter(theta0.values())).device
    n_params = sum(v.numel() for v in theta0.values())
    keys: dict[tuple[float, int], list[int]] = {}
    for i in chunk:
        keys.setdefault((configs[i].lr, configs[i].epochs), []).append(i)
    groups = []
    for (lr, epochs), members in keys.items():
        kg = len(members)
        params = {
            name: v.unsqueeze(0).expand(kg, *v.shape).clone().requires_grad_(True)
            for name, v in theta0.items()
        }
        alpha = torch.tensor(
            [configs[i].alpha for i in members], dtype=torch.float32, device=device
        )
        weights = [l2sp_weight(configs[i], n_params) for i in members]
        two_beta = {
            name: torch.tensor([2.0 * w for w in weights], dtype=torch.float32, device=device)
            .view(kg, *([1] * v.dim()))
            for name, v in theta0.items()
        }
        groups.append(
            {
                "members": members,
                "epochs": epochs,
                "params": params,
                "alpha": alpha,
                "two_beta": two_beta if any(w != 0 for w in weights) else None,
                "schedule": onecycle_schedule(lr, epochs * spe),
            }
        )
    return groups


def _train_chunk(
    chunk: list[int],
    configs: Sequence[TrainConfig],
    theta0: dict[str, torch.Tensor],
    arch: HeadArch,
    z: torch.Tensor,
    errors: torch.Tensor,
    u_sr: torch.Tensor,
    *,
    lam: float,
    batch_size: int,
    seed: int,
    spe: int,
    on_done: OnDone,
) -> None:
    n = z.shape[0]
    device = z.device
    groups = _make_groups(chunk, configs, theta0, spe)
    opt = _make_adam([{"params": list(g["params"].values()), "lr": 0.0} for g in groups])
    gen = torch.Generator().manual_seed(seed)
    step = 0
    n_params = sum(v.numel() for v in theta0.values())
    small_linear = arch.hidden is None and n_params * len(chunk) <= _CAT_MAX
    for epoch in range(max(g["epochs"] for g in groups)):
        active = [j for j, g in enumerate(groups) if g["epochs"] > epoch]
        alpha = torch.cat([groups[j]["alpha"] for j in active])
        perm = torch.randperm(n, generator=gen).to(device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            zb = torch.index_select(z, 0, idx)
            if small_linear and len(active) > 1:
                # Narrow outputs: one GEMM for all active configs beats one per group, and
                # concatenating the (small) stacks is cheap. Wide ones: a GEMM per group.
                out = stack_forward(
                    {k: torch.cat([groups[j]["params"][k] for j in active]) for k in theta0},
                    arch,
                    zb,
                )
            else:
                out = torch.cat([stack_forward(groups[j]["params"], arch, zb) for j in active])
            bce, reg = loss_terms(
                out,
                errors.index_select(0, idx),
                u_sr.index_select(0, idx),
                lam=lam,
                output=arch.output,
            )
            (bce + alpha * reg).sum().backward()
            _set_step(groups, active, opt.param_groups, theta0, step)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
        for j in active:
            g = groups[j]
            if g["epochs"] == epoch + 1:
                on_done(g["members"], {k: v.detach() for k, v in g["params"].items()})
                for p in g["params"].values():
                    opt.state.pop(p, None)
                g["params"] = {k: v.detach() for k, v in g["params"].items()}


def _set_step(groups, active, pgroups, theta0, step: int) -> None:
    """Add the closed-form L2-SP gradient and set each active group's one-cycle lr / beta1."""
    for j in active:
        g = groups[j]
        if g["two_beta"] is not None:
            for name, p in g["params"].items():
                p.grad.addcmul_(p.detach() - theta0[name], g["two_beta"][name])
        lr, beta1 = g["schedule"][step]
        pgroups[j]["lr"] = lr
        pgroups[j]["betas"] = (beta1, pgroups[j]["betas"][1])
