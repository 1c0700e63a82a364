"""AdUE head: SmoothMax, loss terms by hand, engines, search, ablations, fallbacks, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax, logsumexp, softmax
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from torch import nn

from adue.exceptions import NoErrorsWarning, NotFittedError
from adue.features import Features
from adue.heads import ClassifierHead
from adue.methods import get_method, list_methods
from adue.methods._adue_train import (
    HeadArch,
    TrainConfig,
    head_params,
    l2sp,
    loss_terms,
    onecycle_schedule,
)
from adue.methods._smoothmax import adue_score_parts, smoothmax, smoothmax_range
from adue.methods.adue_head import PAPER_GRID, AdUE, _select

_KEYS = ("lr", "epochs", "alpha", "beta", "l2sp")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: one thread is fastest and immune to oversubscribed CI machines.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- helpers
def np_smoothmax(p: np.ndarray, lam: float) -> np.ndarray:
    return logsumexp(lam * p, axis=-1) / lam


def np_adue_u(logits: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """Naive float64 reference ``1 - SmoothMax(softmax(logits))``."""
    return 1.0 - np_smoothmax(softmax(logits.astype(np.float64), axis=-1), lam)


def np_adue_u_accurate(logits: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """Independent float64 ``U = q - r`` without cancellation: ``q = 1 - p_max`` from a
    log-sum-exp over the other classes, ``r = SmoothMax - p_max``."""
    lg = logits.astype(np.float64)
    m = lg.argmax(1)
    rows = np.arange(lg.shape[0])
    others = lg.copy()
    others[rows, m] = -np.inf
    q = np.exp(logsumexp(others, axis=1) - logsumexp(lg, axis=1))
    p = softmax(lg, axis=1)
    gap = p[rows, m][:, None] - p
    gap[rows, m] = np.inf
    r = np.log1p(np.exp(-lam * gap).sum(1)) / lam
    return q - r


def hidden_error_data(n: int, seed: int, d: int = 8):
    """3 classes; the model uses only z_0 for classes 0/1 and never predicts class 2. Rows with
    z_1 > 0.5 are relabelled 2 with probability 0.6: the errors are predictable from z_1, which
    the logits do not see (SR is near chance)."""
    r = np.random.default_rng(seed)
    z = r.normal(size=(n, d)).astype(np.float32)
    w = np.zeros((3, d), np.float32)
    w[0, 0], w[1, 0] = 1.0, -1.0
    b = np.array([0.0, 0.0, -0.5], np.float32)
    logits = z @ w.T + b
    pred = logits.argmax(1)
    wrong = np.where(z[:, 1] > 0.5, r.random(n) < 0.6, r.random(n) < 0.05)
    labels = np.where(wrong, 2, pred)
    return Features(z, logits, labels), w, b


def linear_head(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    return lin


class HFHead(nn.Module):
    """A RoBERTa-style classification head (dense, dropout, out_proj; tanh)."""

    def __init__(self, d: int, h: int, c: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d, h)
        self.dropout = nn.Dropout(0.1)
        self.out_proj = nn.Linear(h, c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(z)))))


def features_from_head(head: nn.Module, n: int, d: int, seed: int, flip: float = 0.2) -> Features:
    r = np.random.default_rng(seed)
    z = r.normal(size=(n, d)).astype(np.float32)
    head.eval()
    with torch.no_grad():
        logits = head(torch.from_numpy(z)).numpy()
    labels = logits.argmax(1)
    c = logits.shape[1]
    flip_rows = (r.random(n) < flip) | (z[:, 0] > 1.0)
    labels = np.where(flip_rows, (labels + 1 + r.integers(0, c - 1, n)) % c, labels)
    return Features(z, logits, labels)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    with torch.no_grad():
        lin.weight.mul_(4.0)
    return lin, features_from_head(lin, 400, 6, 0), features_from_head(lin, 300, 6, 1)


# -------------------------------------------------------------- SmoothMax
@pytest.mark.parametrize("c", [2, 5, 20])
def test_smoothmax_bounds_and_limit(c):
    rng = np.random.default_rng(c)
    p = rng.dirichlet(np.full(c, 0.5), size=500)
    pt = torch.from_numpy(p)
    mx = p.max(1)
    prev = np.inf
    for lam in (1.0, 10.0, 100.0, 1e3, 1e4):
        sm = smoothmax(pt, lam).numpy()
        np.testing.assert_allclose(sm, np_smoothmax(p, lam), rtol=1e-12)
        assert np.all(sm >= mx - 1e-12)
        assert np.all(sm <= mx + math.log(c) / lam + 1e-12)
        lo, hi = smoothmax_range(c, lam)
        assert np.all(sm >= lo - 1e-12) and np.all(sm <= hi + 1e-12)
        gap = np.max(sm - mx)
        assert gap < prev
        prev = gap
    assert prev < 1e-3  # -> max as lam grows
    lo, hi = smoothmax_range(c, 100.0)
    uniform = torch.full((1, c), 1.0 / c, dtype=torch.float64)
    onehot = torch.zeros((1, c), dtype=torch.float64)
    onehot[0, 0] = 1.0
    assert smoothmax(uniform, 100.0).item() == pytest.approx(lo, rel=1e-14)
    assert smoothmax(onehot, 100.0).item() == pytest.approx(hi, rel=1e-14)


@pytest.mark.parametrize("c", [2, 3, 20])
def test_score_parts_equal_naive_formula(c):
    rng = np.random.default_rng(c)
    logits = rng.normal(size=(2000, c)) * rng.uniform(0, 6, size=(2000, 1))
    logits[:100, 0] += rng.uniform(15, 30, size=100)  # confident rows: 1 - SmoothMax < 1e-6
    u, log_pu, log_1m = adue_score_parts(torch.from_numpy(logits), 100.0)
    ref = np_adue_u(logits)
    np.testing.assert_allclose(u.numpy(), ref, rtol=0, atol=1e-13)
    acc = np_adue_u_accurate(logits)
    np.testing.assert_allclose(u.numpy(), acc, rtol=1e-12)  # also where U is tiny
    # The BCE probability equals U (relative 1e-8 from the smooth floor) for lam = 100.
    np.testing.assert_allclose(np.exp(log_pu.numpy()), acc, rtol=2e-8)
    np.testing.assert_allclose(log_1m.numpy(), np.log1p(-acc), rtol=1e-7, atol=1e-15)
    # float32 (training precision) keeps a float32-size relative error, even for tiny U.
    u32, log_pu32, _ = adue_score_parts(torch.from_numpy(logits).float(), 100.0)
    assert acc.min() < 1e-9
    np.testing.assert_allclose(u32.double().numpy(), acc, rtol=2e-5)
    np.testing.assert_allclose(log_pu32.double().numpy(), np.log(acc), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("logits_row", [[0.0, 20.0], [0.0, 20.0, 1.0]])
def test_gradient_survives_where_paper_clamp_zeroes_it(logits_row):
    """A confidently wrong row (logit gap 20): in float32 ``1 - SmoothMax`` rounds to 0, the
    paper's clamp to [eps, 1 - eps] gives zero gradient; ours keeps the exact BCE gradient."""
    eps = 1e-7
    x = torch.tensor([logits_row], requires_grad=True)
    u_paper = 1.0 - smoothmax(torch.softmax(x, -1), 100.0)
    assert u_paper.item() == 0.0  # cancellation
    bce_paper = -torch.log(u_paper.clamp(eps, 1 - eps)).sum()
    bce_paper.backward()
    assert torch.count_nonzero(x.grad) == 0

    x2 = torch.tensor([logits_row], requires_grad=True)
    bce, _ = loss_terms(
        x2.unsqueeze(0), torch.ones(1), torch.zeros(1), lam=100.0, output="smoothmax"
    )
    bce.sum().backward()
    # Reference: exact -log U in float64 (U = q - r, q = 1 - p_max computed in log space).
    lg = np.array(logits_row, dtype=np.float64)
    lp = log_softmax(lg)
    m = lg.argmax()
    q = math.exp(logsumexp(np.delete(lg, m)) - logsumexp(lg))
    p = np.exp(lp)
    r = math.log1p(np.exp(-100.0 * (p[m] - np.delete(p, m))).sum()) / 100.0
    assert bce.item() == pytest.approx(-math.log(q - r), rel=1e-6)
    # d(-log q)/d logits_j = p_j - [j != m] softmax_{i != m}(logits)_j (the max logit gets ~ +1).
    expected = p.copy()
    others = np.exp(np.delete(lg, m) - logsumexp(np.delete(lg, m)))
    expected[np.arange(lg.size) != m] -= others
    np.testing.assert_allclose(x2.grad[0].numpy(), expected, atol=1e-6)
    assert abs(x2.grad[0, m].item()) > 0.99


@pytest.mark.parametrize("c", [2, 3, 20])
def test_loss_gradient_finite_at_extreme_logit_gaps(c):
    # float32 denormals (S ~ e^-100 at gaps ~95-110) must not turn the gradient into inf/NaN.
    for gap in (0.0, 1e-3, 30.0, 61.0, 88.0, 95.0, 100.0, 104.0, 110.0, 300.0, 1e4):
        for lam in (1.0, 100.0, 1000.0):
            x = torch.tensor([[0.0, gap] + [1.0] * (c - 2)], requires_grad=True)
            for e in (0.0, 1.0):
                x.grad = None
                bce, reg = loss_terms(
                    x.unsqueeze(0),
                    torch.tensor([e]),
                    torch.tensor([0.1]),
                    lam=lam,
                    output="smoothmax",
                )
                (bce + reg).sum().backward()
                assert torch.isfinite(bce).all() and torch.isfinite(x.grad).all(), (gap, lam, e)


def test_hand_written_backward_passes_gradcheck():
    from adue.methods._smoothmax import _log_q_and_log_s

    g = torch.Generator().manual_seed(0)
    for c in (3, 7):
        x = torch.randn(4, 3, c, dtype=torch.float64, generator=g) * 4
        assert torch.autograd.gradcheck(lambda t: _log_q_and_log_s(t, 100.0), (x.requires_grad_(),))
        y = x.detach().clone()
        y[0, 0, 0] += 70.0  # one row takes the log-space autograd path
        assert torch.autograd.gradcheck(lambda t: _log_q_and_log_s(t, 100.0), (y.requires_grad_(),))
        assert torch.autograd.gradcheck(lambda t: adue_score_parts(t, 10.0), (x.requires_grad_(),))


def test_small_lam_keeps_bce_finite_with_gradient():
    # lam = 1 and C = 2: U = 1 - SmoothMax < 0 everywhere; the BCE stays finite with gradient.
    x = torch.tensor([[0.0, 0.3], [0.0, 5.0]], requires_grad=True)
    u, log_pu, log_1m = adue_score_parts(x, 1.0)
    assert torch.all(u < 0)
    loss = -(log_pu.sum() + log_1m.sum())
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(x.grad)) and torch.all(x.grad != 0)


# --------------------------------------------------------------- loss terms
def test_loss_terms_by_hand_four_examples():
    lam = 100.0
    logits = np.array(
        [[2.0, 0.5, -1.0], [0.1, 0.0, 0.2], [-1.0, 3.0, 0.5], [0.3, 0.3, 2.5]], dtype=np.float32
    )
    e = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    stored = logits + np.array([[0.5, 0, 0], [0, 0.3, 0], [0, 0, 0], [1.0, 0, 0]], np.float32)
    u_sr = 1.0 - softmax(stored.astype(np.float64), axis=1).max(1)

    p = softmax(logits.astype(np.float64), axis=1)
    u = 1.0 - logsumexp(lam * p, axis=1) / lam
    bce_ref = -np.mean(e * np.log(u) + (1 - e) * np.log(1 - u))
    reg_ref = np.mean((u - u_sr) ** 2)

    bce, reg = loss_terms(
        torch.from_numpy(logits)[None],
        torch.from_numpy(e),
        torch.from_numpy(u_sr).float(),
        lam=lam,
        output="smoothmax",
    )
    assert bce.shape == (1,) and reg.shape == (1,)
    assert bce.item() == pytest.approx(bce_ref, rel=1e-5)
    assert reg.item() == pytest.approx(reg_ref, rel=1e-5)

    # Sigmoid output (random-linear ablation): U = sigmoid(s).
    s = np.array([-2.0, 0.5, 1.5, -0.1], dtype=np.float32)
    us = expit(s.astype(np.float64))
    bce_s, reg_s = loss_terms(
        torch.from_numpy(s)[None, :, None],
        torch.from_numpy(e),
        torch.from_numpy(u_sr).float(),
        lam=lam,
        output="sigmoid",
    )
    assert bce_s.item() == pytest.approx(
        -np.mean(e * np.log(us) + (1 - e) * np.log(1 - us)), rel=1e-6
    )
    assert reg_s.item() == pytest.approx(np.mean((us - u_sr) ** 2), rel=1e-6)

    # L2-SP: sum of squared differences over all parameters; 0 at init.
    torch.manual_seed(0)
    head = ClassifierHead(4, 3, hidden_features=5)
    theta0 = {k: v.unsqueeze(0) for k, v in head_params(head).items()}
    assert l2sp(theta0, theta0).item() == 0.0
    moved = {k: v + 0.01 * (i + 1) for i, (k, v) in enumerate(theta0.items())}
    ref = sum(((0.01 * (i + 1)) ** 2) * v.numel() for i, v in enumerate(theta0.values()))
    assert l2sp(moved, theta0).item() == pytest.approx(ref, rel=1e-4)
    # Stacked configs give one value each.
    two = {k: torch.cat([theta0[k], moved[k]]) for k in theta0}
    np.testing.assert_allclose(l2sp(two, theta0).numpy(), [0.0, ref], rtol=1e-4)


def test_onecycle_schedule_matches_torch():
    for total in (1, 2, 3, 7, 50, 391):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([p], lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total)
        ours = onecycle_schedule(1e-3, total)
        assert len(ours) == total
        for lr, b1 in ours:
            assert opt.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-13, abs=1e-20)
            assert opt.param_groups[0]["betas"][0] == pytest.approx(b1, rel=1e-13)
            opt.step()
            sched.step()


# ------------------------------------------------------------------ epochs=0
def test_epochs_zero_is_the_original_head_linear(small):
    lin, train, _ = small
    test = features_from_head(lin, 200, 6, 7)
    m = AdUE(head=lin, epochs=0).fit(train)
    u = m.uncertainty(test)
    assert u.dtype == np.float64 and u.shape == (200,)
    np.testing.assert_allclose(u, np_adue_u(test.logits), atol=1e-6)
    with torch.no_grad():
        own = lin(torch.from_numpy(test.z)).double().numpy()
    np.testing.assert_allclose(u, np_adue_u(own), atol=1e-12)
    assert torch.equal(m.head_.out_proj.weight, lin.weight)
    assert torch.equal(m.head_.out_proj.bias, lin.bias)
    assert np.all((u > 0) & (u < 1))


def test_epochs_zero_two_layer_hf_head():
    torch.manual_seed(1)
    hf = HFHead(10, 7, 4)
    with torch.no_grad():
        hf.out_proj.weight.mul_(5)
    train = features_from_head(hf, 300, 10, 0)
    test = features_from_head(hf, 150, 10, 1)
    m = AdUE(head=hf, epochs=0).fit(train)
    assert m.head_.hidden_features == 7 and m.head_.activation_name == "tanh"
    np.testing.assert_allclose(m.uncertainty(test), np_adue_u(test.logits), atol=1e-6)


# ------------------------------------------------------------- training
def test_trained_head_beats_softmax_response():
    train, w, b = hidden_error_data(4000, 0)
    val, _, _ = hidden_error_data(1000, 1)
    test, _, _ = hidden_error_data(4000, 2)
    m = AdUE(
        head=linear_head(w, b),
        search=dict(lr=[1e-2, 3e-2], epochs=[20], alpha=[0.1], beta=[0.01, 0.1]),
    ).fit(train, val)
    auc_sr = roc_auc_score(test.errors(), 1 - test.probabilities().max(1))
    auc_adue = roc_auc_score(test.errors(), m.uncertainty(test))
    assert auc_sr < 0.55
    assert auc_adue > auc_sr + 0.15, (auc_adue, auc_sr)
    assert len(m.search_results_) == 4 and m.search_fallback_ is None
    best = max(r["roc_auc"] for r in m.search_results_)
    chosen = [r for r in m.search_results_ if r["roc_auc"] == best][0]
    assert m.best_params_ == {k: chosen[k] for k in _KEYS}


def test_two_layer_head_trains_and_moves():
    torch.manual_seed(2)
    hf = HFHead(10, 7, 3)
    train = features_from_head(hf, 600, 10, 0)
    test = features_from_head(hf, 300, 10, 1)
    m = AdUE(head=hf, epochs=3, lr=1e-2).fit(train)
    u = m.uncertainty(test)
    assert np.all(np.isfinite(u)) and np.all((u > 0) & (u < 1))
    assert not torch.equal(m.head_.dense.weight, hf.dense.weight)
    # The source head is untouched by fit.
    torch.manual_seed(2)
    assert torch.equal(hf.dense.weight, HFHead(10, 7, 3).dense.weight)


def _fit_pair(head, train, val, search, **kw):
    out = {}
    for engine in ("batched", "sequential"):
        m = AdUE(head=head, search=search, seed=3, **kw)
        m._engine = engine
        m._keep_all = True
        out[engine] = m.fit(train, val)
    return out["batched"], out["sequential"]


@pytest.mark.parametrize("kind", ["linear", "two_layer", "random_linear"])
def test_batched_search_equals_sequential(kind):
    torch.manual_seed(4)
    if kind == "two_layer":
        head = HFHead(6, 5, 3)
    else:
        head = nn.Linear(6, 3)
        with torch.no_grad():
            head.weight.mul_(4.0)
    train = features_from_head(head, 300, 6, 0)
    val = features_from_head(head, 200, 6, 1)
    grid = dict(lr=[1e-2, 1e-3], epochs=[0, 1, 3], alpha=[0.0, 0.5], beta=[0.0, 0.1])
    init = "random_linear" if kind == "random_linear" else "classifier"
    a, b = _fit_pair(head, train, val, grid, init=init)
    assert len(a.search_results_) == 24
    assert a.best_params_ == b.best_params_
    for ra, rb in zip(a.search_results_, b.search_results_, strict=True):
        assert {k: ra[k] for k in _KEYS} == {
            k: rb[k] for k in _KEYS
        }
        assert ra["roc_auc"] == pytest.approx(rb["roc_auc"], abs=1e-5)
    assert set(a._all_weights) == set(range(24))
    for i, wa in a._all_weights.items():
        for name, t in wa.items():
            np.testing.assert_allclose(t.numpy(), b._all_weights[i][name].numpy(), atol=1e-5)
    np.testing.assert_allclose(a.uncertainty(val), b.uncertainty(val), atol=1e-5)
    # Training moved the heads (the comparison is not trivially between initial weights).
    moved = a._all_weights[len(a.search_results_) // 2 - 1]
    init_w = a._all_weights[0]
    assert any(not torch.equal(moved[k], init_w[k]) for k in moved)


@pytest.mark.parametrize("patch", [("_CHUNK_BYTES", 1), ("_CHUNK_BYTES", 40_000), ("_CAT_MAX", 0)])
def test_batched_chunking_and_gemm_layout_do_not_change_results(small, monkeypatch, patch):
    import adue.methods._adue_train as tr

    lin, train, val = small
    grid = dict(lr=[1e-2, 1e-3], epochs=[1, 2], alpha=[0.0, 0.5], beta=[0.1])
    ref = AdUE(head=lin, search=grid)
    ref._keep_all = True
    ref.fit(train, val)
    monkeypatch.setattr(tr, patch[0], patch[1])
    other = AdUE(head=lin, search=grid)
    other._keep_all = True
    other.fit(train, val)
    for i, w in ref._all_weights.items():
        for name, t in w.items():
            np.testing.assert_allclose(t.numpy(), other._all_weights[i][name].numpy(), atol=1e-6)
    assert ref.best_params_ == other.best_params_


def test_paper_grid_and_ablation_switches():
    grid = AdUE(head=nn.Linear(3, 2), search="paper")._grid()
    assert len(grid) == 144 and len(set(grid)) == 144
    assert grid[0] == TrainConfig(1e-3, 5, 0.0, 0.01) and grid[-1] == TrainConfig(
        1e-5, 20, 1.0, 1.0
    )
    assert sorted({c.lr for c in grid}) == sorted(PAPER_GRID["lr"])
    sizes = {"bce": 9, "bce_l2sp": 36, "bce_reg": 36, "full": 144}
    for loss, size in sizes.items():
        g = AdUE(head=nn.Linear(3, 2), search="paper", loss=loss)._grid()
        assert len(g) == size
        if loss in ("bce", "bce_l2sp"):
            assert all(c.alpha == 0 for c in g)
        if loss in ("bce", "bce_reg"):
            assert all(c.beta == 0 for c in g)
    g = AdUE(head=nn.Linear(3, 2), search={"lr": [0.1, 0.2]}, epochs=4, alpha=0.3, beta=0.2)._grid()
    assert g == [TrainConfig(0.1, 4, 0.3, 0.2), TrainConfig(0.2, 4, 0.3, 0.2)]


def test_ablation_switches_change_the_loss(small):
    lin, train, val = small
    kw = dict(head=lin, lr=1e-2, epochs=2, seed=1)
    scores = {}
    for loss in ("full", "bce", "bce_l2sp", "bce_reg"):
        scores[loss] = AdUE(loss=loss, alpha=0.7, beta=0.3, **kw).fit(train).uncertainty(val)
    # A switched-off term is the same as its weight set to 0.
    np.testing.assert_array_equal(
        scores["bce"], AdUE(alpha=0.0, beta=0.0, **kw).fit(train).uncertainty(val)
    )
    np.testing.assert_array_equal(
        scores["bce_l2sp"], AdUE(alpha=0.0, beta=0.3, **kw).fit(train).uncertainty(val)
    )
    np.testing.assert_array_equal(
        scores["bce_reg"], AdUE(alpha=0.7, beta=0.0, **kw).fit(train).uncertainty(val)
    )
    # ... and each term changes the result.
    for a, b in [
        ("full", "bce"),
        ("full", "bce_l2sp"),
        ("full", "bce_reg"),
        ("bce_l2sp", "bce_reg"),
    ]:
        assert np.max(np.abs(scores[a] - scores[b])) > 1e-6
    m = AdUE(loss="bce", alpha=0.7, beta=0.3, **kw).fit(train)
    assert m.best_params_ == {"lr": 1e-2, "epochs": 2, "alpha": 0.0, "beta": 0.0, "l2sp": "sum"}


def test_random_inits(small):
    lin, train, val = small
    # random_linear: one seeded Linear(d, 1) with a sigmoid, head not needed.
    m0 = AdUE(init="random_linear", epochs=0, seed=5).fit(train)
    torch.manual_seed(5)
    ref = nn.Linear(6, 1)
    assert isinstance(m0.head_, nn.Linear) and m0.head_.out_features == 1
    assert torch.equal(m0.head_.weight, ref.weight) and torch.equal(m0.head_.bias, ref.bias)
    with torch.no_grad():
        s = ref(torch.from_numpy(val.z))[:, 0].double().numpy()
    np.testing.assert_allclose(m0.uncertainty(val), expit(s), atol=1e-12)
    m = AdUE(init="random_linear", epochs=3, lr=1e-2, seed=5).fit(train)
    u = m.uncertainty(val)
    assert np.all((u > 0) & (u < 1)) and not np.allclose(u, m0.uncertainty(val))
    # random_classifier: same architecture as the head, freshly initialised from the seed.
    r0 = AdUE(head=lin, init="random_classifier", epochs=0, seed=5).fit(train)
    torch.manual_seed(5)
    fresh = ClassifierHead(6, 3)
    assert torch.equal(r0.head_.out_proj.weight, fresh.out_proj.weight)
    assert not torch.equal(r0.head_.out_proj.weight, lin.weight)
    # L2-SP anchors on the random init: a huge beta keeps the head at it.
    r1 = AdUE(head=lin, init="random_classifier", loss="bce_l2sp", beta=1e6, epochs=2, seed=5).fit(
        train
    )
    assert torch.allclose(r1.head_.out_proj.weight, fresh.out_proj.weight, atol=1e-3)


def test_fit_leaves_global_rng_alone(small):
    lin, train, _ = small
    state = torch.get_rng_state()
    AdUE(head=lin, init="random_classifier", epochs=1).fit(train)
    AdUE(init="random_linear", epochs=1).fit(train)
    assert torch.equal(state, torch.get_rng_state())


def test_determinism(small):
    lin, train, val = small
    grid = dict(lr=[1e-2], epochs=[1, 2], alpha=[0.1], beta=[0.1])
    a = AdUE(head=lin, search=grid, seed=7).fit(train, val).uncertainty(val)
    b = AdUE(head=lin, search=grid, seed=7).fit(train, val).uncertainty(val)
    c = AdUE(head=lin, search=grid, seed=8).fit(train, val).uncertainty(val)
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-7


# --------------------------------------------------------------- fallbacks
def test_fallback_when_val_has_no_errors(small):
    lin, train, val = small
    correct = val.subset(val.errors() == 0)
    m = AdUE(head=lin, search=dict(lr=[1e-2, 1e-3], epochs=[1]), lr=1e-2, epochs=2, seed=2)
    with pytest.warns(NoErrorsWarning, match="no misclassified rows"):
        m.fit(train, correct)
    assert "no misclassified rows" in m.search_fallback_
    assert m.search_results_ == []
    assert m.best_params_ == {"lr": 1e-2, "epochs": 2, "alpha": 0.1, "beta": 0.1, "l2sp": "sum"}
    plain = AdUE(head=lin, lr=1e-2, epochs=2, seed=2).fit(train, val)
    assert plain.search_fallback_ is None
    np.testing.assert_array_equal(m.uncertainty(val), plain.uncertainty(val))
    # Only errors: also undefined.
    wrong = val.subset(val.errors() == 1)
    with pytest.warns(NoErrorsWarning, match="only misclassified rows"):
        AdUE(head=lin, search="paper", epochs=0).fit(train, wrong)
    # A search without val (and without search_cv) falls back too.
    with pytest.warns(UserWarning, match="needs a validation split"):
        m2 = AdUE(head=lin, search="paper", epochs=0).fit(train)
    assert "val is None" in m2.search_fallback_


def test_search_none_records_val_auc(small):
    lin, train, val = small
    m = AdUE(head=lin, epochs=1, lr=1e-2).fit(train, val)
    assert len(m.search_results_) == 1 and m.search_fallback_ is None
    assert m.search_results_[0]["roc_auc"] == pytest.approx(
        roc_auc_score(val.errors(), m.uncertainty(val)), abs=1e-9
    )
    m = AdUE(head=lin, epochs=1, lr=1e-2).fit(train)
    assert math.isnan(m.search_results_[0]["roc_auc"])


def test_search_cv_selects_by_folds_and_refits(small):
    lin, train, _ = small
    grid = dict(lr=[1e-2, 1e-3], epochs=[1, 2], alpha=[0.1], beta=[0.1])
    m = AdUE(head=lin, search=grid, search_cv=3, seed=4).fit(train, None)
    assert m.search_fallback_ is None and len(m.search_results_) == 4
    for r in m.search_results_:
        assert len(r["fold_roc_auc"]) == 3
        assert r["roc_auc"] == pytest.approx(np.mean(r["fold_roc_auc"]), abs=1e-12)
    i = _select([r["roc_auc"] for r in m.search_results_])
    cfg = {k: m.search_results_[i][k] for k in _KEYS}
    assert m.best_params_ == cfg
    # Refit on all training rows: same as training the chosen config alone.
    alone = AdUE(head=lin, seed=4, **cfg).fit(train)
    np.testing.assert_array_equal(m.uncertainty(train), alone.uncertainty(train))
    # One fold recomputed independently.
    e = train.errors()
    tr, te = next(StratifiedKFold(3, shuffle=True, random_state=4).split(np.zeros(e.size), e))
    r0 = m.search_results_[3]
    one = AdUE(head=lin, seed=4, **{k: r0[k] for k in _KEYS})
    one.fit(train.subset(tr))
    auc = roc_auc_score(e[te], one.uncertainty(train.subset(te)))
    assert r0["fold_roc_auc"][0] == pytest.approx(auc, abs=1e-5)
    # Too few errors for k folds: fallback.
    few = train.subset(np.concatenate([np.flatnonzero(e == 0), np.flatnonzero(e == 1)[:2]]))
    with pytest.warns(NoErrorsWarning, match="search_cv=3 needs"):
        f = AdUE(head=lin, search=grid, search_cv=3).fit(few)
    assert f.search_fallback_ is not None


def test_selection_tie_rule():
    assert _select([0.5, 0.7, 0.7 + 5e-7, math.nan]) == 1
    assert _select([0.5, 0.7, 0.7 + 5e-6]) == 2
    assert _select([math.nan, math.nan]) == -1


def test_device_auto_is_resolved_at_fit(small):
    """``device="auto"`` (RunConfig's default) trains where adue.device.resolve_device says:
    the same scores as naming that device; the parameter itself stays "auto" (clone-able)."""
    from adue.device import resolve_device

    lin, train, val = small
    auto = AdUE(head=lin, epochs=2, device="auto").fit(train)
    named = AdUE(head=lin, epochs=2, device=str(resolve_device("auto"))).fit(train)
    assert auto.get_params()["device"] == "auto"
    np.testing.assert_allclose(auto.uncertainty(val), named.uncertainty(val), rtol=0, atol=1e-6)


# -------------------------------------------------------------- bad input
def test_bad_input_and_params(small):
    lin, train, val = small
    assert "adue" in list_methods()
    assert isinstance(get_method("adue", head=lin), AdUE)
    with pytest.raises(NotFittedError):
        AdUE(head=lin).uncertainty(val)
    with pytest.raises(ValueError, match="width 5 but the features have width 6"):
        AdUE(head=nn.Linear(5, 3)).fit(train)
    with pytest.raises(ValueError, match="has 2 outputs but the features' logits have 3"):
        AdUE(head=nn.Linear(6, 2)).fit(train)
    with pytest.raises(ValueError, match="The 'loss' parameter of AdUE must be one of"):
        AdUE(head=lin, loss="mse").fit(train)
    with pytest.raises(ValueError, match="The 'init' parameter of AdUE"):
        AdUE(head=lin, init="zeros").fit(train)
    with pytest.raises(ValueError, match="The 'search' parameter of AdUE"):
        AdUE(head=lin, search="big").fit(train, val)
    with pytest.raises(ValueError, match="The 'search' parameter of AdUE"):
        AdUE(head=lin, search={"gamma": [1]}).fit(train, val)
    with pytest.raises(ValueError, match=r"The 'search\['lr'\]' parameter"):
        AdUE(head=lin, search={"lr": [0.0]}).fit(train, val)
    with pytest.raises(ValueError, match="The 'search_cv' parameter of AdUE"):
        AdUE(head=lin, search_cv=3).fit(train)
    with pytest.raises(ValueError, match="The 'search_cv' parameter of AdUE"):
        AdUE(head=lin, search="paper", search_cv=1).fit(train)
    with pytest.raises(ValueError, match="The 'head' parameter of AdUE"):
        AdUE().fit(train)
    with pytest.raises(ValueError, match="The 'lam' parameter of AdUE"):
        AdUE(head=lin, lam=0).fit(train)
    with pytest.raises(ValueError, match="The 'epochs' parameter of AdUE"):
        AdUE(head=lin, epochs=1.5).fit(train)
    with pytest.raises(ValueError, match="The 'device' parameter of AdUE"):
        AdUE(head=lin, device="no-such-device").fit(train)
    with pytest.raises(TypeError, match=(  # adue.architectures.classifier_head's message
            r"The 'head' must be an nn.Linear, an adue.heads.ClassifierHead, a module with "
            r"'dense' and 'out_proj' Linear layers or a Hugging Face \*ForSequenceClassification. "
            r"Got ReLU instead.")):
        AdUE(head=nn.ReLU()).fit(train)
    with pytest.raises(ValueError, match="The 'device' parameter of AdUE must be 'auto', 'cpu'"):
        AdUE(head=lin, device="tpu").fit(train)
    other = Features(
        np.zeros((5, 4), np.float32), np.zeros((5, 3), np.float32), np.zeros(5, np.int64)
    )
    with pytest.raises(ValueError, match="must match the 'train' features"):
        AdUE(head=lin).fit(train, other)
    m = AdUE(head=lin, epochs=0).fit(train)
    with pytest.raises(ValueError, match="fitted on features of width 6; got width 4"):
        m.uncertainty(other)
    with pytest.raises(TypeError, match="adue.features.Features"):
        m.uncertainty(np.zeros((3, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdUE(head=lin, epochs=0).fit(train, val)  # no spurious warnings
    with pytest.warns(UserWarning, match="lam=1"):
        AdUE(head=lin, epochs=0, lam=1.0).fit(train)


def test_head_arch_of_random_linear_is_sigmoid(small):
    _, train, _ = small
    m = AdUE(init="random_linear", epochs=0).fit(train)
    assert m._arch == HeadArch(6, 1, None, "tanh", True, "sigmoid")


def test_absurd_learning_rate_is_warned_and_never_selected(small):
    lin, train, val = small
    grid = dict(lr=[1e6, 1e-2], epochs=[2], alpha=[0.1], beta=[0.1])
    with pytest.warns(UserWarning, match=r"1 config\(s\) gave non-finite or constant scores on "
                      r"the validation split: \{'lr': 1000000.0, 'epochs': 2.*\(constant\)"):
        m = AdUE(head=lin, search=grid).fit(train, val)
    assert m.best_params_["lr"] == 1e-2
    assert math.isnan(m.search_results_[0]["roc_auc"]) and not math.isnan(m.search_results_[1]["roc_auc"])
    assert np.ptp(m.uncertainty(val)) > 0
    with pytest.warns(UserWarning, match="on a cross-validation fold: .*'lr': 1000000.0"):
        cv = AdUE(head=lin, search=grid, search_cv=3).fit(train)
    assert cv.best_params_["lr"] == 1e-2
    # A single config: the trained head itself is reported.
    with pytest.warns(UserWarning, match=r"on the training rows \(the trained head\): .*1000000.0"):
        AdUE(head=lin, lr=1e6, epochs=2).fit(train, val)
    with pytest.raises(RuntimeError, match="non-finite or constant validation scores"):
        with pytest.warns(UserWarning):
            AdUE(head=lin, search=dict(lr=[1e6, 1e7], epochs=[2])).fit(train, val)


# ------------------------------------------- loss="auto" (beyond the paper, adue_auto)
def test_auto_grid_adds_beta_zero_and_mean_l2sp():
    full = AdUE(head=nn.Linear(3, 2), search="paper")._grid()
    auto = AdUE(head=nn.Linear(3, 2), search="paper", loss="auto")._grid()
    assert len(auto) == 3 * 3 * 4 * (1 + 4 * 2) == 324 and len(set(auto)) == 324
    assert set(full) < set(auto)  # the paper's configs are all still there
    assert {c.beta for c in auto} == {0.0, 0.01, 0.1, 0.5, 1.0}
    assert {c.alpha for c in auto} == {0.0, 0.1, 0.3, 1.0}
    assert {c.l2sp for c in auto if c.beta == 0} == {"sum"}
    assert sum(c.l2sp == "mean" for c in auto) == sum(c.l2sp == "sum" and c.beta > 0 for c in auto) == 144
    g = AdUE(head=nn.Linear(3, 2), search={"lr": [0.1]}, epochs=4, alpha=0.3, beta=0.2, loss="auto")._grid()
    assert g == [
        TrainConfig(0.1, 4, 0.3, 0.0, "sum"),
        TrainConfig(0.1, 4, 0.3, 0.2, "sum"),
        TrainConfig(0.1, 4, 0.3, 0.2, "mean"),
    ]
    with pytest.raises(ValueError, match=r"The 'search\['l2sp'\]' parameter of AdUE"):
        AdUE(head=nn.Linear(3, 2), search={"l2sp": ["max"]})._grid()
    with pytest.raises(ValueError, match="The 'l2sp' parameter of AdUE"):
        AdUE(head=nn.Linear(6, 3), l2sp="max").fit(hidden_error_data(50, 0, d=6)[0])


def test_mean_l2sp_is_sum_divided_by_the_parameter_count(small):
    lin, train, val = small
    n_params = 6 * 3 + 3
    kw = dict(head=lin, lr=1e-2, epochs=3, alpha=0.1, seed=1)
    for engine in ("batched", "sequential"):
        mean = AdUE(beta=0.5, l2sp="mean", **kw)
        total = AdUE(beta=0.5 / n_params, l2sp="sum", **kw)
        mean._engine = total._engine = engine
        np.testing.assert_array_equal(mean.fit(train).uncertainty(val), total.fit(train).uncertainty(val))
        assert mean.best_params_["l2sp"] == "mean"
    # ... and it is weaker than the sum: the head moves further from its start.
    far = AdUE(beta=0.5, l2sp="mean", **kw).fit(train).head_.out_proj.weight
    near = AdUE(beta=0.5, l2sp="sum", **kw).fit(train).head_.out_proj.weight
    assert (far - lin.weight).norm() > (near - lin.weight).norm()
    grid = dict(lr=[1e-2], epochs=[2], alpha=[0.1], beta=[0.0, 0.3], l2sp=["sum", "mean"])
    a, b = _fit_pair(lin, train, val, grid)
    assert len(a.search_results_) == 3
    for i, wa in a._all_weights.items():
        for name, t in wa.items():
            np.testing.assert_allclose(t.numpy(), b._all_weights[i][name].numpy(), atol=1e-5)


def _many_class_errors(n: int, seed: int):
    """C = 50, d = 8: a Linear head that never predicts class 49 and ignores z_0; rows with
    z_0 > 0.5 are mislabelled with probability 0.6 (0.05 elsewhere). Raising the class-49
    logit with z_0 flattens the softmax exactly there, which needs a large move of the head."""
    c, d = 50, 8
    w = (np.random.default_rng(99).normal(size=(c, d)) * 0.4).astype(np.float32)
    w[:, 0] = 0.0
    w[c - 1] = 0.0
    b = np.zeros(c, np.float32)
    b[c - 1] = -1.0
    r = np.random.default_rng(seed)
    z = r.normal(size=(n, d)).astype(np.float32)
    logits = z @ w.T + b
    pred = logits.argmax(1)
    wrong = np.where(z[:, 0] > 0.5, r.random(n) < 0.6, r.random(n) < 0.05)
    return Features(z, logits, np.where(wrong, (pred + 1) % c, pred)), w, b


_SMALL_SEARCH = dict(lr=[1e-1], epochs=[10], alpha=[0.0, 0.1], beta=[0.01, 0.1, 1.0])


def test_auto_avoids_sum_l2sp_with_many_classes_and_beats_the_full_loss():
    train, w, b = _many_class_errors(4000, 99)
    val, _, _ = _many_class_errors(1333, 100)
    test, _, _ = _many_class_errors(3000, 101)
    head = linear_head(w, b)
    full = AdUE(head=head, search=_SMALL_SEARCH, loss="full").fit(train, val)
    auto = AdUE(head=head, search=_SMALL_SEARCH, loss="auto").fit(train, val)
    assert len(full.search_results_) == 6 and len(auto.search_results_) == 14
    chosen = auto.best_params_
    assert chosen["beta"] == 0.0 or chosen["l2sp"] == "mean", chosen
    auc_full = roc_auc_score(test.errors(), full.uncertainty(test))
    auc_auto = roc_auc_score(test.errors(), auto.uncertainty(test))
    auc_sr = roc_auc_score(test.errors(), 1 - test.probabilities().max(1))
    assert auc_auto > auc_full + 0.05 and auc_full > auc_sr + 0.1, (auc_auto, auc_full, auc_sr)


def _calibrated(n: int, seed: int, w: np.ndarray) -> Features:
    """Labels drawn from the head's own softmax: its softmax response is already a good score."""
    r = np.random.default_rng(seed)
    z = r.normal(size=(n, w.shape[1])).astype(np.float32)
    logits = z @ w.T
    p = softmax(logits.astype(np.float64), axis=1)
    labels = (p.cumsum(1) > r.random((n, 1))).argmax(1)
    return Features(z, logits, labels)


def test_auto_keeps_l2sp_when_it_helps():
    # Few training rows (150 for 165 head parameters) and a good initial head: moving away
    # from it overfits, so L2-SP (a sum, strong) is what the validation split prefers.
    w = (np.random.default_rng(3).normal(size=(5, 32)) * 0.5).astype(np.float32)
    train, val, test = _calibrated(150, 0, w), _calibrated(2000, 1, w), _calibrated(4000, 2, w)
    head = linear_head(w, np.zeros(5, np.float32))
    auto = AdUE(head=head, search=_SMALL_SEARCH, loss="auto").fit(train, val)
    bce = AdUE(head=head, search=_SMALL_SEARCH, loss="bce").fit(train, val)
    assert auto.best_params_["beta"] > 0 and auto.best_params_["l2sp"] == "sum", auto.best_params_
    auc_auto = roc_auc_score(test.errors(), auto.uncertainty(test))
    auc_bce = roc_auc_score(test.errors(), bce.uncertainty(test))
    assert auc_auto > auc_bce + 0.05, (auc_auto, auc_bce)


@pytest.mark.parametrize("name", ["adue_auto", "adue_auto_heldout"])
def test_auto_variants_record_the_chosen_configuration(name):
    from adue.runner import _evaluate_variant
    from adue.variants import get_variant, resolve_variants

    v = get_variant(name)
    assert v.method == "adue" and v.params["loss"] == "auto" and v.searched
    assert v.fit_on == ("validation" if name.endswith("heldout") else "train")
    assert name in {x.name for x in resolve_variants(None)}  # in the default list
    train, w, b = _many_class_errors(600, 99)
    feats = {"train": train, "validation": _many_class_errors(600, 100)[0],
             "test": _many_class_errors(600, 101)[0]}
    test = feats["test"]
    errors = test.errors()
    from types import SimpleNamespace  # the parts of the runner's cell that a variant reads

    cell = SimpleNamespace(cfg=SimpleNamespace(seed=0), search=_SMALL_SEARCH, device=None)
    entry, u = _evaluate_variant(cell, v, feats, linear_head(w, b), errors)
    assert entry["status"] == "ok", entry
    assert entry["params"]["loss"] == "auto"
    bp = entry["best_params"]
    assert set(bp) == {"lr", "epochs", "alpha", "beta", "l2sp"}
    fit_on = feats["validation"] if name.endswith("heldout") else feats["train"]
    kw = dict(v.params, search=_SMALL_SEARCH, seed=0)
    ref = AdUE(head=linear_head(w, b), **kw)
    ref.fit(fit_on) if name.endswith("heldout") else ref.fit(fit_on, feats["validation"])
    assert bp == ref.best_params_
    np.testing.assert_array_equal(u, ref.uncertainty(test))
