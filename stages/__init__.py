"""cifar10-tricks: one module per DVC stage plus the shared modules they import.

Stage modules (run by ``dvc.yaml`` as ``python -m stages.<name>``): ``download``,
``stats``, ``train``, ``evaluate``, ``compare``.  Shared modules: ``params``
(the typed params.yaml schema), ``cifar`` (archive extraction, safe parsing,
the synthetic generator, the data file), ``model`` (the CNN), ``runtime``
(device, precision, seeding, atomic writes, error reporting).
"""

import time

STARTED = time.perf_counter()  # when a stage process first imported the package: before torch
