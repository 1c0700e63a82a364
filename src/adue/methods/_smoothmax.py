"""SmoothMax and the AdUE score ``U = 1 - SmoothMax(softmax(logits))`` without cancellation.

``SmoothMax(p) = (1/lam) log sum_i exp(lam p_i)`` (paper eq. 3). On the probability simplex it is
convex and symmetric, so its exact range is

    lo = SmoothMax(uniform) = 1/C + log(C)/lam
    hi = SmoothMax(one-hot) = 1 + log(1 + (C - 1) exp(-lam))/lam,

and ``max(p) <= SmoothMax(p) <= max(p) + log(C)/lam``. For ``lam = 100`` the overshoot above 1
(``hi - 1``) is below 1e-43: ``U = 1 - SmoothMax`` is in practice never negative. What kills the
paper's gradient is float32 **cancellation**: for a confident prediction ``1 - SmoothMax`` rounds
to 0 (any logit gap above ~17), the clamp ``U -> [eps, 1 - eps]`` then sets ``U = eps`` with zero
gradient, and the BCE of a confidently *wrong* training example -- the most informative rows for
error detection -- contributes nothing.

Rescaling SmoothMax to its exact range, ``(hi - SmoothMax)/(hi - lo)``, would also keep the
BCE input in [0, 1], but it changes the BCE's scale (about ``2 U`` for C = 2) and sets it
against the regulariser ``alpha (U - U_SR)^2``, which pulls ``U`` itself towards the original
softmax response (for a calibrated model both terms agree on ``U = P(error)``). So the BCE
stays on ``U``, computed without the cancellation:

``U`` is computed in log space. With ``m = argmax p``, ``q = 1 - p_m = sum_{i != m} p_i`` and
``r = SmoothMax(p) - p_m = (1/lam) log(1 + S)``, ``S = sum_{i != m} exp(-lam (p_m - p_i))``::

    log q = logsumexp_{i != m}(logits_i) - logsumexp(logits)       (no cancellation)
    log S = logsumexp_{i != m}(-lam (p_m - p_i))                     (no underflow)
    t     = r / q  = exp(log S + log(log1p(S)/S) - log(lam) - log q)
    U     = q (1 - t)                                              (= 1 - SmoothMax exactly)

Both logs are formed without ever exponentiating a tiny number, so the gradient is finite
for any finite logits (with ``S`` itself, a float32 ``S ~ e^-100`` is a denormal and the
chain rule through ``log(log1p(S))`` overflows to inf/NaN at logit gaps of ~95-110).

``t`` is largest at the uniform ``p``, where ``t = log(C) / (lam (1 - 1/C))`` (0.014 for C = 2,
0.032 for C = 20 at ``lam = 100``); ``U <= 0`` needs ``t >= 1``, i.e. ``q < exp(-lam)/lam`` for
``lam = 100`` (a logit gap above ~105) or a small ``lam``.

For the BCE the probability is ``U~ = q g(1 - t)`` with ``g(y) = (y + sqrt(y^2 + 4 kappa^2))/2``
(``kappa = 1e-4``; ``log g(y) = log(kappa) + asinh(y / (2 kappa))``, stable), a smooth
positive version of ``max(y, 0)``: ``g(y) = y (1 + O(kappa^2/y^2))``
for ``y >> kappa`` and ``g(y) ~ kappa^2/|y|`` for ``y << -kappa``. Wherever ``U > 0`` by a margin
(always for ``lam = 100`` outside the float limits) ``U~ = U`` to a relative 1e-8, i.e. the BCE is
the paper's BCE on ``U`` -- but its gradient stays exact where ``1 - SmoothMax`` underflows. Where
``U <= 0`` (small ``lam``), ``log U~ ~ log q + 2 log(kappa) - log t`` stays finite with a
non-zero gradient that pushes ``U`` up, instead of being clamped flat. ``U~ <= (1 - 1/C)(1 +
1e-8) < 1``, so ``log(1 - U~)`` is always finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "smoothmax",
    "smoothmax_range",
    "adue_score_parts",
    "softmax_response",
    "KAPPA",
]

#: Width of the smooth floor g used for the BCE probability (see module docstring).
KAPPA = 1e-4
# log(r/q) is capped here (t = e^60 keeps hypot finite in float32); only reached at float limits.
_LOG_T_CAP = 60.0


def smoothmax(p: torch.Tensor, lam: float) -> torch.Tensor:
    """``(1/lam) log sum_i exp(lam p_i)`` over the last axis: (..., C) -> (...)."""
    return torch.logsumexp(lam * p, dim=-1) / lam


def smoothmax_range(num_classes: int, lam: float) -> tuple[float, float]:
    """Exact range ``(lo, hi)`` of SmoothMax on the C-class probability simplex."""
    c = int(num_classes)
    lo = 1.0 / c + math.log(c) / lam
    hi = 1.0 + math.log1p((c - 1) * math.exp(-lam)) / lam
    return lo, hi


class _LogQS(torch.autograd.Function):
    """``(log q, log S)`` from logits (..., C), C > 2, with a hand-written backward.

    With ``m = argmax``, ``e_i = exp(l_i - l_m)`` for ``i != m`` (``e_m := 0``),
    ``Q = sum_i e_i``, ``q = Q / (1 + Q)``, ``x_i = -lam (1 - e_i) / (1 + Q)`` (the exponents of
    ``S``; ``x_m := -inf``), ``w = softmax(x)`` and ``log S = logsumexp(x)``. For ``j != m``::

        d log q / d l_j = e_j / (Q (1 + Q))
        d log S / d l_j = e_j (lam w_j / (1 + Q) + lam W / (1 + Q)^2),   W = 1 - sum_i w_i e_i

    and the ``m`` entries are minus the sum of the others (both are shift invariant). About ten
    passes over (..., C) forward and four backward, instead of about twice that with autograd.
    Only used where ``Q > e^-60`` (see :func:`_log_q_and_log_s`).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, lam: float):  # type: ignore[override]
        mx, idx = logits.max(dim=-1, keepdim=True)
        e = torch.sub(logits, mx).exp_().scatter_(-1, idx, 0.0)
        big_q = e.sum(dim=-1)
        coef = (-lam / (1.0 + big_q)).unsqueeze(-1)
        x = torch.sub(1.0, e).mul_(coef).scatter_(-1, idx, -math.inf)
        x_max = x.amax(dim=-1, keepdim=True)
        a = x.sub_(x_max).exp_()  # in place: x is not needed any more; a_m = 0
        s_norm = a.sum(dim=-1)
        ctx.save_for_backward(e, a, big_q, s_norm, idx)
        ctx.lam = lam
        return torch.log(big_q) - torch.log1p(big_q), x_max.squeeze(-1) + torch.log(s_norm)

    @staticmethod
    def backward(ctx, g_logq: torch.Tensor, g_logs: torch.Tensor):  # type: ignore[override]
        e, a, big_q, s_norm, idx = ctx.saved_tensors
        lam = ctx.lam
        inv = 1.0 / (1.0 + big_q)
        big_w = 1.0 - torch.linalg.vecdot(a, e) / s_norm
        c1 = g_logq / (big_q * (1.0 + big_q)) + g_logs * (lam * big_w * inv * inv)
        c2 = g_logs * (lam * inv) / s_norm
        grad = torch.addcmul(c1.unsqueeze(-1), a, c2.unsqueeze(-1)).mul_(e)
        grad.scatter_(-1, idx, -grad.sum(dim=-1, keepdim=True))
        return grad, None


def _log_q_and_log_s(logits: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``log q = log(1 - max p)`` and ``log S``, ``S = sum_{i != m} exp(-lam (p_m - p_i))``."""
    if logits.shape[-1] == 2:
        # Binary closed form: with delta = |l_0 - l_1|, q = sigmoid(-delta) and
        # p_m - p_other = tanh(delta / 2). |.| has gradient 0 at a tie, where U is stationary.
        # (tanh(delta/2) = 1 - 2q, formed from log q.)
        delta = (logits[..., 0] - logits[..., 1]).abs()
        log_q = F.logsigmoid(-delta)
        return log_q, (2.0 * lam) * torch.exp(log_q) - lam
    log_q, log_s = _LogQS.apply(logits, lam)
    if bool((log_q > -60.0).all()):  # Q > e^-60: the fast path is exact and overflow-free
        return log_q, log_s
    # Some row has every other class ~60 logits below its max: autograd in log space.
    mx, idx = logits.max(dim=-1, keepdim=True)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    e = torch.exp(logits - mx).masked_fill(mask, 0.0)
    big_q = e.sum(dim=-1)  # sum_{i != m} p_i / p_m, may underflow: log q from logsumexp
    log_q = (
        torch.logsumexp(logits.masked_fill(mask, -math.inf), dim=-1)
        - mx.squeeze(-1)
        - torch.log1p(big_q)
    )
    # p_m - p_i = (1 - e_i) / (1 + Q); the max itself is excluded.
    x = ((1.0 - e) * (-lam / (1.0 + big_q)).unsqueeze(-1)).masked_fill(mask, -math.inf)
    return log_q, torch.logsumexp(x, dim=-1)


def _log_log1p_exp(log_s: torch.Tensor) -> torch.Tensor:
    """``log(log1p(S))`` from ``log S``, finite with a finite gradient even where ``S`` underflows.

    ``log(log1p(S)) = log S + log(log1p(S) / S)``; for ``S < 1e-3`` the last factor is the series
    ``1 - S/2 + S^2/3`` (error < S^3/4).
    """
    s = torch.exp(log_s)
    small = s < 1e-3
    s_big = s.clamp(min=1e-3)
    ratio = torch.where(small, 1.0 - s * (0.5 - s / 3.0), torch.log1p(s_big) / s_big)
    return log_s + torch.log(ratio)


def _asinh(x: torch.Tensor) -> torch.Tensor:
    """``asinh`` from vectorised ops (torch's is scalar code, ~20x slower on CPU).

    ``sign(x) log1p(a + a^2 / (1 + sqrt(1 + a^2)))``, ``a = |x|``, written without overflow;
    relative error ~1 ulp. (Gradient 0 instead of 1 exactly at ``x = 0``.)
    """
    a = x.abs()
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.copysign(torch.log1p(a + a * (a / (1.0 + torch.hypot(a, one)))), x)


def adue_score_parts(
    logits: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AdUE score and the BCE log-probabilities from logits (..., C).

    Returns ``(u, log_pu, log_1m_pu)``, each of shape (...):

    - ``u = 1 - SmoothMax(softmax(logits))`` (the paper's score; higher = more likely wrong),
      computed as ``q (1 - t)`` without cancellation;
    - ``log_pu = log U~`` and ``log_1m_pu = log(1 - U~)``, the log-probabilities the BCE uses
      (``U~ = U`` up to a relative 1e-8 for ``lam = 100``; see the module docstring).

    Differentiable everywhere (no clamps on the path of the gradient, no NaN at the saturating
    ends); dtype follows ``logits`` (float32 for training, float64 for scoring).
    """
    log_q, log_s = _log_q_and_log_s(logits, lam)
    log_t = _log_log1p_exp(log_s) - (math.log(lam) + log_q)
    t = torch.exp(log_t.clamp(max=_LOG_T_CAP))
    y = 1.0 - t
    u = torch.exp(log_q) * y
    # log g(y) = log(kappa) + asinh(y / (2 kappa)), exact for g(y) = (y + sqrt(y^2 + 4 kappa^2))/2.
    log_pu = log_q + (math.log(KAPPA) + _asinh(y * (0.5 / KAPPA)))
    log_1m_pu = torch.log1p(-torch.exp(log_pu))
    return u, log_pu, log_1m_pu


def softmax_response(logits: torch.Tensor) -> torch.Tensor:
    """``U_SR = 1 - max softmax`` (...,), computed as ``exp(log q)`` without cancellation."""
    idx = logits.argmax(dim=-1, keepdim=True)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    log_q = torch.logsumexp(logits.masked_fill(mask, -math.inf), dim=-1) - torch.logsumexp(
        logits, dim=-1
    )
    return torch.exp(log_q)
