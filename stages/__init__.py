"""cifar10-tricks: one module per DVC stage, on top of the shared modules they import.

Stages (``python -m stages.<name>`` in dvc.yaml): ``download``, ``stats``, ``train``,
``evaluate``, ``compare``, ``page``.
Shared: ``params`` (the params.yaml schema), ``io`` (errors, run_main, atomic writers),
``cifar`` (reading CIFAR-10 safely, the synthetic generator, the data file), ``device``
(device, precision, threads, determinism, seeds per step), ``model`` (the stacked CNN),
``dropout`` (CPU masks), ``step`` (Adam, the training step, its set-up), ``checkpoint``
(saved models), ``predictions`` (the file train writes and evaluate reads), ``inference``
(Welch, Holm, power), ``charts`` (the comparison's PNGs).
"""

import time

STARTED = time.perf_counter()  # when a stage process first imported the package: before torch
