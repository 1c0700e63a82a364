"""The feature container: validation, helpers, safetensors round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from adue.features import Features, features_path, load_features, save_features


def _arrays(n=6, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c)), rng.integers(0, c, n)


def test_numpy_inputs_are_stored_with_fixed_dtypes():
    z, logits, labels = _arrays()
    f = Features(z, logits, labels)
    assert f.z.dtype == np.float32 and f.logits.dtype == np.float32 and f.labels.dtype == np.int64
    assert (f.n, f.dim, f.num_classes, len(f)) == (6, 4, 3, 6)
    np.testing.assert_allclose(f.z, z.astype(np.float32))
    assert f.z.flags.c_contiguous


def test_torch_inputs_including_bfloat16():
    z, logits, labels = _arrays()
    f = Features(
        torch.tensor(z, dtype=torch.bfloat16), torch.tensor(logits), torch.tensor(labels)
    )
    assert isinstance(f.z, np.ndarray) and f.z.dtype == np.float32
    np.testing.assert_allclose(f.z, torch.tensor(z, dtype=torch.bfloat16).float().numpy())
    np.testing.assert_array_equal(f.labels, labels)


def test_integral_float_labels_are_accepted():
    z, logits, labels = _arrays()
    f = Features(z, logits, labels.astype(np.float64))
    np.testing.assert_array_equal(f.labels, labels)


def test_helpers():
    z, logits, labels = _arrays(n=50, seed=1)
    f = Features(z, logits, labels)
    pred = logits.astype(np.float32).argmax(axis=1)
    np.testing.assert_array_equal(f.predictions(), pred)
    np.testing.assert_allclose(f.probabilities(), softmax(logits.astype(np.float32).astype(np.float64), axis=1), rtol=1e-12)
    np.testing.assert_allclose(f.probabilities().sum(axis=1), 1.0)
    np.testing.assert_array_equal(f.errors(), (pred != labels).astype(np.int64))
    assert f.accuracy() == pytest.approx(float((pred == labels).mean()))
    sub = f.subset(np.array([3, 1]))
    np.testing.assert_array_equal(sub.labels, labels[[3, 1]])
    assert f.subset(labels == 0).n == int((labels == 0).sum())
    assert "n=50" in repr(f)


def test_probabilities_are_stable_for_huge_logits():
    f = Features(np.zeros((1, 2)), np.array([[1000.0, -1000.0]]), np.array([0]))
    np.testing.assert_allclose(f.probabilities(), [[1.0, 0.0]])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda z, lg, y: (z[0], lg, y), "'z' field .* 2-D"),
        (lambda z, lg, y: (z, lg[:, 0], y), "'logits' field .* 2-D"),
        (lambda z, lg, y: (z, lg, y[:, None]), "'labels' field .* 1-D"),
        (lambda z, lg, y: (z[:5], lg, y), "same number of rows: z has 5, logits 6, labels 6"),
        (lambda z, lg, y: (z, lg, y[:4]), "same number of rows"),
        (lambda z, lg, y: (z[:0], lg[:0], y[:0]), "at least one row"),
        (lambda z, lg, y: (z, lg[:, :1], np.zeros(6, int)), "at least 2 classes"),
        (lambda z, lg, y: (np.where(np.arange(6)[:, None] == 2, np.nan, z), lg, y),
         "'z' field of Features must be finite.*first at row 2"),
        (lambda z, lg, y: (z, np.where(np.arange(6)[:, None] == 4, np.inf, lg), y),
         "'logits' field of Features must be finite.*first at row 4"),
        (lambda z, lg, y: (z, lg, np.r_[y[:5], 3]), r"must lie in \[0, 3\).*\[3\]"),
        (lambda z, lg, y: (z, lg, np.r_[y[:5], -1]), r"must lie in \[0, 3\)"),
        (lambda z, lg, y: (z, lg, y + 0.5), "must hold integers"),
        (lambda z, lg, y: (z, lg, y.astype(str)), "must be integer"),
        (lambda z, lg, y: (z.astype(str), lg, y), "must be numeric"),
    ],
)
def test_validation_errors_name_the_problem(change, match):
    z, logits, labels = _arrays()
    with pytest.raises(ValueError, match=match):
        Features(*change(z, logits, labels))


def test_frozen():
    f = Features(*_arrays())
    with pytest.raises(AttributeError):
        f.z = np.zeros((6, 4))


def test_save_load_round_trip(tmp_path):
    f = Features(*_arrays(n=20, seed=2))
    path = save_features(f, features_path(tmp_path, "train"), metadata={"model": "x"})
    assert path == tmp_path / "features" / "train.safetensors"
    assert not list(path.parent.glob("*.tmp"))
    for g in (load_features(tmp_path, "train"), load_features(path, "ignored")):
        np.testing.assert_array_equal(g.z, f.z)
        np.testing.assert_array_equal(g.logits, f.logits)
        np.testing.assert_array_equal(g.labels, f.labels)


def test_load_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="No features for split 'test'"):
        load_features(tmp_path, "test")
    bad = features_path(tmp_path, "train")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="Cannot read features file"):
        load_features(tmp_path, "train")


def test_unlabelled_features(tmp_path):
    z, logits, labels = _arrays(n=10, seed=3)
    f = Features(z, logits)
    assert f.labels is None and not f.has_labels and Features(z, logits, labels).has_labels
    np.testing.assert_array_equal(f.predictions(), logits.astype(np.float32).argmax(1))
    with pytest.raises(ValueError, match=r"Features.errors\(\) needs gold labels"):
        f.errors()
    with pytest.raises(ValueError, match=r"Features.accuracy\(\) needs gold labels"):
        f.accuracy()
    assert f.subset(np.array([1, 2])).labels is None and f.subset(np.array([1, 2])).n == 2
    assert "no labels" in repr(f)
    with pytest.raises(ValueError, match="same number of rows: z has 9, logits 10"):
        Features(z[:9], logits)
    path = save_features(f, tmp_path / "u.safetensors")
    g = load_features(path, "test")
    assert g.labels is None
    np.testing.assert_array_equal(g.z, f.z)
    np.testing.assert_array_equal(g.logits, f.logits)
