"""Class names: untrusted text from a downloaded file, checked once wherever they are read.

A name reaches CSV, JSON, Markdown, the plots page and scikit-learn's report, so it must be
printable, short, unique, free of markup, and not one of the report's own keys.
"""

from __future__ import annotations

import re

MAX_CLASSES = 1000  # CIFAR-10 has 10, CIFAR-100 100; the confusion matrix is classes squared
MAX_LENGTH = 64
# Letters and digits of any script, space and a few marks (the apostrophe among them): never
# <, >, &, a double quote or a backslash.
ALLOWED = re.compile(r"[\w][\w .,()+'-]*", re.UNICODE)
# scikit-learn's classification_report keys, which a class of that name would collide with
REPORT_KEYS = ("accuracy", "macro avg", "weighted avg", "micro avg", "samples avg")


def problem(names) -> str | None:
    """What is wrong with ``names`` (a sequence of str), or None."""
    if not 2 <= len(names) <= MAX_CLASSES:
        return f"{len(names)} class names; a data set here has 2 to {MAX_CLASSES}"
    for name in names:
        if not isinstance(name, str) or len(name) > MAX_LENGTH or not ALLOWED.fullmatch(name):
            shown = repr(name)[: MAX_LENGTH + 10]
            return (
                f"class name {shown} is not allowed (at most {MAX_LENGTH} letters, digits, spaces "
                "and .,()+'- marks, starting with a letter or digit)"
            )
        if name.strip() != name:
            return f"class name {name!r} has leading or trailing spaces"
        if name.lower() in REPORT_KEYS:
            return f"class name {name!r} collides with scikit-learn's report key of that name"
    folded = [n.casefold() for n in names]
    twice = next((n for n, f in zip(names, folded) if folded.count(f) > 1), None)
    if twice is not None:
        return f"class name {twice!r} is given twice (per-class results would collapse)"
    return None
