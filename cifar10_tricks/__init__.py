"""cifar10_tricks: the code the pipeline's stages (:mod:`stages`) share, one concern per module.

Params and failures: ``params`` (the params.yaml schema), ``errors`` (``UserError`` and the
rerun advice), ``cli`` (a stage process: logging, signals, one ``error:`` line), ``files``
(atomic writers, checked reads).
Data: ``classes`` (checked class names), ``cifar`` (reading CIFAR-10 safely, the synthetic
generator, the data file).
Training (torch): ``device`` (device, precision, threads, determinism, seeds per step),
``model`` (the stacked CNN), ``dropout`` (each seed's own dropout masks: the CPU's and the
hashed ones), ``optim`` (Adam and SGD), ``step`` (one training step, and its CUDA-graph
replay), ``checkpoint`` (saved models).
Results: ``predictions`` (train's file for evaluate), ``scores`` (evaluate's report for
compare), ``curves`` (the per-epoch curves), ``inference`` (the paired and Welch t-tests,
Holm, power), ``comparison`` (the comparison's types), ``writeup`` (comparison.md),
``charts`` (its PNGs and plot data).
The command: ``command`` (``cifar10-tricks study NAME``).
Tests and benchmarks: ``testing`` (a copy of the project in a temporary git repository).
"""
