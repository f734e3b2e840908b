"""Class names: untrusted text, refused with a reason unless plain, short, unique and not a key."""

from __future__ import annotations

import pytest

from cifar10_tricks.classes import MAX_CLASSES, problem


def test_cifar10s_names_pass():
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    assert problem(names + ["truck"]) is None
    assert problem(["Straße", "l'oiseau", "T-shirt (top)", "9"]) is None  # any script, marks


@pytest.mark.parametrize(
    "names, says",
    [
        (["cat"], "1 class names"),
        ([f"c{i}" for i in range(MAX_CLASSES + 1)], "2 to 1000"),
        (["cat", "<b>dog</b>"], "is not allowed"),
        (["cat", 'dog"'], "is not allowed"),
        (["cat", "x" * 65], "is not allowed"),
        (["cat", 7], "is not allowed"),
        (["cat", "dog "], "leading or trailing spaces"),
        (["cat", "Weighted Avg"], "collides with scikit-learn's report key"),
        (["cat", "CAT"], "is given twice"),
    ],
)
def test_bad_names_are_refused_with_the_reason(names, says):
    assert says in problem(names)
