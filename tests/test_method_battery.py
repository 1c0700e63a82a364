"""One battery of contract checks run over every registered uncertainty method.

The battery is parametrised over ``list_methods()``, so a newly registered method is covered
automatically. Each method needs an entry in ``FACTORIES``: how to build it for this data
(some need constructor arguments, e.g. AdUE's ``head``) and which directional check holds for
it by construction. A registered method without an entry fails the battery (no skip).

Data: three classes in ``D = 6`` dimensions with means ``3 e_c`` (equal norms), and a linear
head ``logits = W z + b`` with ``W = means`` and ``b = -|mu_c|^2 / 2`` (nearest-mean
classifier). Its logits at ``z = 0`` are all equal (a flat softmax), and at ``z = 9 e_0`` they
are strongly peaked; the head is also the ``torch.nn.Linear`` AdUE starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from adue.exceptions import NotFittedError
from adue.features import Features
from adue.methods import get_method, list_methods, method_class
from adue.methods.base import UncertaintyMethod

D, C = 6, 3
MEANS = 3.0 * np.eye(C, D)


def _head() -> torch.nn.Linear:
    head = torch.nn.Linear(D, C)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(MEANS, dtype=torch.float32))
        head.bias.copy_(torch.tensor(-0.5 * (MEANS**2).sum(axis=1), dtype=torch.float32))
    return head


def _features(z: np.ndarray, labels: np.ndarray, head: torch.nn.Linear | None = None) -> Features:
    head = head or _head()
    with torch.no_grad():
        logits = head(torch.tensor(z, dtype=torch.float32)).numpy()
    return Features(z, logits, labels)


def _split(n: int, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % C
    z = MEANS[labels] + 1.5 * rng.standard_normal((n, D))
    return _features(z, labels)


@dataclass
class Context:
    train: Features
    test: Features
    head: torch.nn.Linear


@dataclass
class Spec:
    """How the battery builds a method and which direction check applies.

    ``direction``: ``"softmax"`` = a flat softmax scores above a peaked one; ``"distance"`` = a
    point far from the training data scores above the centre of the training rows. ``make_direction``, when
    given, builds the instance used for that check (e.g. AdUE untrained, where it holds by
    construction). ``make_learned``, for methods trained on the model's errors, builds an
    instance that, trained where the errors are predictable from ``z`` but not from the logits,
    must score the errors higher (see :func:`test_trained_methods_score_errors_higher`).
    """

    make: Callable[[Context], UncertaintyMethod]
    direction: str
    make_direction: Callable[[Context], UncertaintyMethod] | None = None
    make_learned: Callable[[Context], UncertaintyMethod] | None = None


FACTORIES: dict[str, Spec] = {
    "sr": Spec(lambda ctx: get_method("sr"), "softmax"),
    "entropy": Spec(lambda ctx: get_method("entropy"), "softmax"),
    "md": Spec(lambda ctx: get_method("md"), "distance"),
    "rmd": Spec(lambda ctx: get_method("rmd"), "distance"),
    # gamma small: the RBF kernel is near-linear at this scale, so far rows stay far after
    # the kernel PCA (with gamma = 1/d = 1/6 here, rows far beyond the data have kernel rows
    # near 0 and all map near one point: RBF kernel PCA cannot rank them by distance).
    "rde": Spec(lambda ctx: get_method("rde", n_components=4, gamma=0.001), "distance"),
    # AdUE at epochs=0 is U = 1 - SmoothMax(softmax(head(z))): flat > peaked by construction.
    "adue": Spec(
        lambda ctx: get_method("adue", head=ctx.head, epochs=2),
        "softmax",
        make_direction=lambda ctx: get_method("adue", head=ctx.head, epochs=0),
        make_learned=lambda ctx: get_method(
            "adue", head=ctx.head, lr=0.1, epochs=20, alpha=0.0, beta=0.0
        ),
    ),
}

METHODS = list_methods()


@pytest.fixture(scope="module")
def ctx() -> Context:
    return Context(train=_split(150, seed=0), test=_split(40, seed=1), head=_head())


def _spec(name: str) -> Spec:
    spec = FACTORIES.get(name)
    if spec is None:
        pytest.fail(
            f"Method {name!r} is registered but tests/test_method_battery.py has no FACTORIES "
            "entry for it: add one (how to build it, and which direction check holds)."
        )
    return spec


def test_battery_covers_the_builtin_methods():
    assert {"sr", "entropy", "md", "rmd", "rde", "adue"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_fit_returns_self_and_sets_fitted_attributes(name, ctx):
    m = _spec(name).make(ctx)
    assert m.fit(ctx.train) is m
    assert m.n_features_in_ == D
    assert type(m).name == name and isinstance(m, method_class(name))


@pytest.mark.parametrize("name", METHODS)
def test_unfitted_use_raises(name, ctx):
    m = _spec(name).make(ctx)
    with pytest.raises(NotFittedError, match="not fitted"):
        m.uncertainty(ctx.test)


@pytest.mark.parametrize("name", METHODS)
def test_output_shape_dtype_finite(name, ctx):
    u = _spec(name).make(ctx).fit(ctx.train).uncertainty(ctx.test)
    assert isinstance(u, np.ndarray)
    assert u.shape == (ctx.test.n,) and u.dtype == np.float64
    assert np.all(np.isfinite(u))
    one = _spec(name).make(ctx).fit(ctx.train).uncertainty(ctx.test.subset(np.array([0])))
    assert one.shape == (1,)


@pytest.mark.parametrize("name", METHODS)
def test_higher_means_more_uncertain(name, ctx):
    spec = _spec(name)
    make = spec.make_direction or spec.make
    m = make(ctx).fit(ctx.train)
    if spec.direction == "softmax":
        # z = 0: equal logits (flat softmax); z = 9 e_0: class 0 far ahead (peaked)
        z = np.stack([np.zeros(D), 3.0 * MEANS[0]])
        probs = _features(z, np.array([0, 0]), ctx.head).probabilities()
        assert np.allclose(probs[0], 1 / C) and probs[1].max() > 0.999
    elif spec.direction == "distance":
        # the centre of the training rows against a point far from it (about 8.5 within-class
        # standard deviations, along the direction from class 1 to class 0)
        centre = ctx.train.z.mean(axis=0)
        z = np.stack([centre, centre + 2.0 * (MEANS[0] - MEANS[1])])
    else:
        pytest.fail(f"Unknown direction check {spec.direction!r} for {name!r}.")
    u = m.uncertainty(_features(z, np.array([0, 0]), ctx.head))
    flat_or_far = 0 if spec.direction == "softmax" else 1
    assert u[flat_or_far] > u[1 - flat_or_far], u


def _learnable_errors(n: int, seed: int) -> Features:
    """Rows around the means of classes 0 and 1, relabelled 2 (so the head is wrong) with
    probability 0.7 where ``z_5 > 0.5`` and 0.03 elsewhere. The head ignores ``z_5`` (``MEANS``
    live in the first three dimensions), so the logits cannot see where the errors are; ``z``
    can (a head that raises the class-2 logit with ``z_5`` flattens the softmax there)."""
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 2
    z = MEANS[cls] + 1.5 * rng.standard_normal((n, D))
    clean = _features(z, cls)
    pred = clean.predictions()
    wrong = np.where(z[:, 5] > 0.5, rng.random(n) < 0.7, rng.random(n) < 0.03)
    labels = np.where(wrong, np.where(pred == 2, 0, 2), pred)
    return Features(clean.z, clean.logits, labels)


LEARNED = [n for n in METHODS if n in FACTORIES and FACTORIES[n].make_learned is not None]


def test_methods_trained_on_errors_have_a_learned_direction_check():
    assert "adue" in LEARNED


@pytest.mark.parametrize("name", LEARNED)
def test_trained_methods_score_errors_higher(name, ctx):
    from adue.metrics import roc_auc

    spec = _spec(name)
    train, val, test = (_learnable_errors(n, s) for n, s in ((1500, 10), (500, 11), (1500, 12)))
    m = spec.make_learned(ctx).fit(train, val)
    u, e = m.uncertainty(test), test.errors()
    sr = 1.0 - test.probabilities().max(axis=1)
    assert u[e == 1].mean() > u[e == 0].mean()
    assert roc_auc(sr, e) < 0.6 and roc_auc(u, e) > roc_auc(sr, e) + 0.25, (roc_auc(u, e), roc_auc(sr, e))


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_output(name, ctx):
    spec = _spec(name)
    a = spec.make(ctx).fit(ctx.train).uncertainty(ctx.test)
    b = spec.make(ctx).fit(ctx.train).uncertainty(ctx.test)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs_raise_clear_errors(name, ctx):
    m = _spec(name).make(ctx)
    with pytest.raises(TypeError, match="'train' argument must be an adue.features.Features"):
        m.fit((ctx.train.z, ctx.train.logits, ctx.train.labels))
    with pytest.raises(TypeError, match="'val' argument must be an adue.features.Features"):
        m.fit(ctx.train, val={"z": ctx.train.z})
    m.fit(ctx.train)
    with pytest.raises(TypeError, match="must be an adue.features.Features"):
        m.uncertainty(ctx.test.z)
    wide = Features(np.c_[ctx.test.z, ctx.test.z[:, :1]], ctx.test.logits, ctx.test.labels)
    with pytest.raises(ValueError, match=f"width {D}; got width {D + 1}"):
        m.uncertainty(wide)
    more_classes = Features(ctx.test.z, np.c_[ctx.test.logits, ctx.test.logits[:, :1]], ctx.test.labels)
    with pytest.raises(ValueError, match=f"fitted on {C} classes"):
        m.uncertainty(more_classes)
    # NaN never reaches a method: the container refuses it
    with pytest.raises(ValueError, match="must be finite"):
        Features(np.full((2, D), np.nan), np.zeros((2, C)), np.zeros(2, dtype=int))


@pytest.mark.parametrize("name", METHODS)
def test_params_round_trip_and_unknown_params(name, ctx):
    m = _spec(name).make(ctx)
    params = m.get_params()
    assert set(params) == set(type(m)._param_names())
    clone = get_method(name, **params)
    assert clone.get_params().keys() == params.keys()
    with pytest.raises(ValueError, match="Unknown parameter"):
        get_method(name, not_a_parameter=1)
    with pytest.raises(ValueError, match="Unknown parameter"):
        m.set_params(not_a_parameter=1)
    assert name in repr(m) or type(m).__name__ in repr(m)


def test_unknown_method_name():
    with pytest.raises(ValueError, match=r"The 'name' parameter of get_method must be one of \["):
        get_method("nope")


def test_softmax_baselines_equal_their_formulas(ctx):
    from scipy.special import softmax
    from scipy.stats import entropy

    p = softmax(ctx.test.logits.astype(np.float64), axis=1)
    sr = get_method("sr").fit(ctx.train).uncertainty(ctx.test)
    ent = get_method("entropy").fit(ctx.train).uncertainty(ctx.test)
    np.testing.assert_allclose(sr, 1.0 - p.max(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ent, entropy(p, axis=1), rtol=1e-10, atol=1e-15)
    flat = _features(np.zeros((1, D)), np.array([0]), ctx.head)
    assert get_method("entropy").fit(ctx.train).uncertainty(flat)[0] == pytest.approx(np.log(C))
    assert get_method("sr").fit(ctx.train).uncertainty(flat)[0] == pytest.approx(1 - 1 / C)


# ------------------------------------------------ clone, save / load, unlabelled rows
def _same_value(a, b) -> bool:
    if isinstance(a, torch.nn.Module) or isinstance(b, torch.nn.Module):
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    return type(a) is type(b) and a == b


def _same_params(a: UncertaintyMethod, b: UncertaintyMethod) -> bool:
    pa, pb = a.get_params(), b.get_params()
    return pa.keys() == pb.keys() and all(_same_value(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("name", METHODS)
def test_sklearn_clone_gives_unfitted_equal_params_copy(name, ctx):
    from sklearn.base import clone

    m = _spec(name).make(ctx).fit(ctx.train)
    c = clone(m)
    assert type(c) is type(m) and c is not m
    assert _same_params(c, m)
    with pytest.raises(NotFittedError):
        c.uncertainty(ctx.test)
    # the clone fits to the same scores
    np.testing.assert_array_equal(c.fit(ctx.train).uncertainty(ctx.test), m.uncertainty(ctx.test))


@pytest.mark.parametrize("name", METHODS)
def test_save_load_round_trip(name, ctx, tmp_path):
    from adue.methods import load_method

    m = _spec(name).make(ctx).fit(ctx.train)
    with pytest.raises(NotFittedError):
        _spec(name).make(ctx).save(tmp_path / "unfitted.safetensors")
    path = m.save(tmp_path / "m.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    loaded = load_method(path)
    assert type(loaded) is type(m) and _same_params(loaded, m)
    np.testing.assert_allclose(loaded.uncertainty(ctx.test), m.uncertainty(ctx.test), rtol=0, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # atomic: no temp left


def _header_end(raw: bytes) -> int:
    return 8 + int.from_bytes(raw[:8], "little")


@pytest.mark.parametrize("name", METHODS)
def test_tampered_truncated_or_newer_files_are_clear_errors(name, ctx, tmp_path):
    from adue.methods import load_method

    path = _spec(name).make(ctx).fit(ctx.train).save(tmp_path / "m.safetensors")
    raw = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=f"Cannot read method file {bad}.*truncated"):
        load_method(bad)
    key = b'n_features_in_\\": 6'
    assert key in raw
    bad.write_bytes(raw.replace(key, key[:-1] + b"7", 1))  # a fitted attribute edited
    with pytest.raises(ValueError, match=f"Method file {bad} was modified or is corrupted"):
        load_method(bad)
    if len(raw) > _header_end(raw):  # tensor bytes: flip the last one
        bad.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x10]))
        with pytest.raises(ValueError, match="was modified or is corrupted"):
            load_method(bad)
    newer = raw.replace(b'"format_version":"1"', b'"format_version":"9"')
    assert newer != raw
    bad.write_bytes(newer)
    with pytest.raises(ValueError, match=f"{bad} has format version 9, written by a newer adue"):
        load_method(bad)
    with pytest.raises(FileNotFoundError, match="No saved method at"):
        load_method(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", METHODS)
def test_unlabelled_rows_are_scored(name, ctx):
    m = _spec(name).make(ctx).fit(ctx.train)
    unlabelled = Features(ctx.test.z, ctx.test.logits)
    assert not unlabelled.has_labels
    np.testing.assert_array_equal(m.uncertainty(unlabelled), m.uncertainty(ctx.test))
    fresh = _spec(name).make(ctx)
    if type(fresh).fit_needs_labels:
        with pytest.raises(ValueError, match="'train' features of .* must have labels"):
            fresh.fit(Features(ctx.train.z, ctx.train.logits))
    else:
        fresh.fit(Features(ctx.train.z, ctx.train.logits))
        np.testing.assert_array_equal(fresh.uncertainty(ctx.test), m.uncertainty(ctx.test))
