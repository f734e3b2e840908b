"""The pipeline's stages: one module per stage of dvc.yaml, run as ``python -m stages.<name>``.

``download`` (CIFAR-10, or a local or generated archive, to one data file), ``stats`` (the
train-set mean and std), ``train`` (one variant's seeds), ``evaluate`` (one variant's scores),
``compare`` (each trick's effect, over seeds) and ``page`` (the offline `dvc plots show` page).
Each opens with its inputs, params and outputs; the code they share is the library,
:mod:`cifar10_tricks`.
"""

import sys

from cifar10_tricks.cli import on_import_failure

# Imported before any stage module runs: a stage whose imports fail for want of memory (torch
# under `ulimit -v`) still ends in one `error:` line.
sys.excepthook = on_import_failure
