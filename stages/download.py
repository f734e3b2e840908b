"""Stage `download`: get CIFAR-10's python-format archive and store it as one data file.

Params:  ``data`` (source, md5, synthetic).
Output:  the data file (``--out``, e.g. data/cifar10.npz): uint8 images (N, 32, 32, 3),
         int64 labels and class names for the train and test splits.

``data.source`` is ``cifar10`` (the canonical URL, md5-checked), an http(s) URL, a local
archive, a local extracted ``cifar-10-batches-py/`` folder (or the folder holding it, as
torchvision's ``CIFAR10(root, download=True)`` leaves it), or ``synthetic`` (a generated
archive of the same format and layout).  Every source goes through the same reading and
checking code in :mod:`stages.cifar`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from stages import cifar, params
from stages.runtime import run_main

log = logging.getLogger("cifar10_tricks.download")


def read_source(data: params.DataParams, workdir: Path) -> cifar.Dataset:
    """The data set ``data.source`` names, fetched or generated into ``workdir`` if needed."""
    if data.source == "synthetic":
        s = data.synthetic
        log.info("generating a synthetic CIFAR-format archive: %d train / %d test images (seed %d)",
                 s.n_train, s.n_test, s.seed)
        return cifar.parse_archive(cifar.write_synthetic_archive(workdir / "cifar-10-python.tar.gz", s.n_train,
                                                                 s.n_test, s.seed, s.noise))
    if data.source == "cifar10" or cifar.is_url(data.source):
        return cifar.parse_archive(cifar.fetch(data.source, data.md5, workdir))
    path = Path(data.source).expanduser()
    if path.is_dir():
        log.info("note: %s is a folder, so its batch files are read as they are; the md5 check is of "
                 "archives only%s.", path, f" (data.md5 = {data.md5} is not applied)" if data.md5 else "")
        return cifar.parse_members(cifar.read_folder(path), path)
    return cifar.parse_archive(cifar.check_local(path, data.md5))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="the .npz data file to write")
    args = parser.parse_args(argv)

    data = params.load(args.params).data
    with tempfile.TemporaryDirectory(prefix="cifar10-") as tmp:
        dataset = read_source(data, Path(tmp))
    cifar.save(dataset, args.out)
    log.info("wrote %s: %d train and %d test images, classes %s; train labels per class %s",
             args.out, len(dataset.y_train), len(dataset.y_test), ", ".join(dataset.classes),
             np.bincount(dataset.y_train, minlength=len(dataset.classes)).tolist())


if __name__ == "__main__":
    run_main(main)
