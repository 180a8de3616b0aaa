"""napari_chromagan.engine.classes: ImageNet class names, top-k and CSV (no Qt)."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest

from napari_chromagan.engine.classes import class_names, to_csv, top_k


def test_class_names():
    names = class_names()
    assert len(names) == 1000
    assert names[0] == "tench"
    assert names[1] == "goldfish"
    assert names[999] == "toilet tissue"
    assert all(name and name == name.strip() and "," not in name for name in names)
    names.append("x")  # a copy: the cache cannot be changed from outside
    assert len(class_names()) == 1000


def test_top_k_order_and_values():
    probs = np.full(1000, 0.0001, np.float32)
    probs[[7, 3, 500, 1]] = [0.5, 0.2, 0.25, 0.02]
    rows = top_k(probs, 3)
    assert [index for index, _, _ in rows] == [7, 500, 3]
    assert [name for _, name, _ in rows] == [class_names()[i] for i in (7, 500, 3)]
    np.testing.assert_allclose([p for _, _, p in rows], [0.5, 0.25, 0.2], rtol=1e-6)
    assert all(isinstance(i, int) and isinstance(p, float) for i, _, p in rows)
    # ties keep the lower index first; k larger than the number of classes is clipped
    assert [i for i, _, _ in top_k(np.array([0.25, 0.5, 0.25]), 10)] == [1, 0, 2]


def test_top_k_random_distribution_matches_argsort():
    probs = np.random.default_rng(0).dirichlet(np.ones(1000))
    rows = top_k(probs, 50)
    expected = np.argsort(probs)[::-1][:50]
    assert [i for i, _, _ in rows] == expected.tolist()
    assert all(a[2] >= b[2] for a, b in itertools.pairwise(rows))


def test_top_k_validation_and_unnamed_classes():
    with pytest.raises(ValueError, match="one distribution"):
        top_k(np.ones((2, 1000)), 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k(np.ones(1000), 0)
    probs = np.zeros(1002)
    probs[1001] = 1.0
    assert top_k(probs, 1) == [(1001, "class 1001", 1.0)]


def test_csv():
    rows = [(7, "cock", 0.5), (500, 'cliff dwelling, "quoted"', 0.123456789)]
    text = to_csv(rows)
    assert text.splitlines()[0] == "rank,index,class,probability"
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == ["1", "7", "cock", "0.5"]
    assert parsed[2] == ["2", "500", 'cliff dwelling, "quoted"', "0.123457"]
    assert to_csv([]) == "rank,index,class,probability\n"
