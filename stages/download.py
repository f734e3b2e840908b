"""Stage `download`: get CIFAR-10's python-format archive and store it as one data file.

Params:  ``data`` (source, md5, synthetic).
Output:  the data file (``--out``, e.g. data/cifar10.npz): uint8 images (N, 32, 32, 3),
         int64 labels and class names for the train and test splits.

``data.source`` is ``cifar10`` (the canonical URL, md5-checked), an http(s) URL, a local
archive, a local extracted ``cifar-10-batches-py/`` folder (or the folder holding it, as
torchvision's ``CIFAR10(root, download=True)`` leaves it), or ``synthetic`` (a generated
archive of the same format and layout).  Every source goes through the same reading and
checking code in :mod:`cifar10_tricks.cifar`.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import logging
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import numpy as np

from cifar10_tricks import cifar, params
from cifar10_tricks.cli import run_main
from cifar10_tricks.errors import UserError
from cifar10_tricks.files import refuse_linked_folders

log = logging.getLogger("cifar10_tricks.download")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


# The archive is 170 MB.  A server that sends far more, or goes quiet, is not serving it.
MAX_DOWNLOAD_BYTES = 512 * 2**20
TIMEOUT_S = 60.0  # to connect, and between any two reads
# A server that trickles (a byte every few seconds: every read within the timeout) is cut
# off too: past the first minute the average must stay above 32 KiB/s (170 MB in 90 minutes),
# and the whole download ends within 3 hours.
MIN_RATE = 32 * 1024  # bytes per second, averaged from the start
GRACE_S = 60.0
MAX_DOWNLOAD_S = 3 * 3600.0


def fetch(source: str, md5: str | None, workdir: Path) -> Path:
    """Download ``source`` (``cifar10`` or an http(s) URL) into ``workdir``, md5-checked.

    A plain streamed read rather than torchvision's ``download_url``, which has neither a
    timeout nor a size cap: a server that never answers, or never stops, must end in an error.
    """
    from torchvision.datasets.utils import check_md5

    url, md5 = (CIFAR10_URL, md5 or CIFAR10_MD5) if source == "cifar10" else (source, md5)
    target = workdir / (PurePosixPath(url.split("?", 1)[0]).name or "archive.tar.gz")
    offline = (
        "If this machine is offline, download cifar-10-python.tar.gz elsewhere and point the "
        "pipeline at it: `dvc exp run -S data.source=/path/to/cifar-10-python.tar.gz` (or edit "
        "data.source in params.yaml); `-S data.source=synthetic` runs everything on generated data."
    )
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            total, start = 0, time.monotonic()
            # read1: what has arrived, at most 1 MiB, so the clock is checked between reads
            while chunk := response.read1(1 << 20):
                total += len(chunk)
                if total > MAX_DOWNLOAD_BYTES:
                    raise cifar.ArchiveError(
                        f"{url} sent more than {MAX_DOWNLOAD_BYTES} bytes; CIFAR-10's archive is "
                        "170 MB, so the download was stopped. Check data.source."
                    )
                _check_pace(url, total, time.monotonic() - start, offline)
                try:
                    out.write(chunk)
                except OSError as exc:  # a failed write names no file: say which one
                    raise OSError(exc.errno, exc.strerror, str(target)) from None
    except urllib.error.HTTPError as exc:  # before URLError, its parent: a status, a redirect loop
        raise UserError(f"cannot download {url}: HTTP {exc.code} {exc.reason}. {offline}") from None
    except ValueError as exc:  # http.client.InvalidURL: a space, a bad port
        raise UserError(f"data.source = {url!r} is not a valid URL ({exc}).") from None
    except OSError as exc:
        if exc.filename == str(target):  # writing it, not fetching it: the disk's problem
            raise
        _cannot(url, exc, offline)
    except (urllib.error.URLError, http.client.HTTPException) as exc:
        _cannot(url, exc, offline)
    if md5 and not check_md5(str(target), md5):
        raise cifar.ArchiveError(
            f"{url} downloaded but failed its md5 check (expected {md5}). "
            "Check data.md5, or the mirror you point data.source at."
        )
    return target


def _check_pace(url: str, total: int, elapsed: float, offline: str) -> None:
    """Stop a download that would take hours: too slow past the grace period, or too long."""
    if elapsed > MAX_DOWNLOAD_S or (elapsed > GRACE_S and total / elapsed < MIN_RATE):
        raise UserError(
            f"cannot download {url}: {total:,} bytes in {elapsed:.0f} s, under "
            f"{MIN_RATE // 1024} KiB/s (or past {MAX_DOWNLOAD_S / 3600:g} h), so the download "
            f"was stopped. {offline}"
        )


def _cannot(url: str, exc: BaseException, offline: str):
    cause = getattr(exc, "reason", None) or exc
    if isinstance(cause, TimeoutError) or "timed out" in str(cause):
        cause = f"no answer for {TIMEOUT_S:g} s"
    raise UserError(f"cannot download {url}: {cause}. {offline}") from None


def check_local(path: Path, md5: str | None) -> Path:
    """A local archive: it must exist, and match ``md5`` when one is given."""
    from torchvision.datasets.utils import calculate_md5

    if not path.is_file():
        raise UserError(
            f"data.source = {str(path)!r} is not a file or a folder. Give the path of "
            f"cifar-10-python.tar.gz or of an extracted {cifar.BATCH_DIR}/ folder, an http(s) URL, "
            "`cifar10` or `synthetic`."
        )
    if md5 and (actual := calculate_md5(str(path))) != md5:  # the archive is read once
        raise cifar.ArchiveError(
            f"{path} does not match data.md5 = {md5} (md5 is {actual}); the file is corrupt or "
            "not the one you meant. Fix data.md5 or re-download the archive."
        )
    return path


def read_source(data: params.DataParams, workdir: Path) -> cifar.Dataset:
    """The data set ``data.source`` names, fetched or generated into ``workdir`` if needed."""
    if data.source == "synthetic":
        s = data.synthetic
        log.info(
            "generating a synthetic CIFAR-format archive: %d train / %d test images (seed %d)",
            s.n_train,
            s.n_test,
            s.seed,
        )
        return cifar.parse_archive(
            cifar.write_synthetic_archive(
                workdir / "cifar-10-python.tar.gz", s.n_train, s.n_test, s.seed, s.noise
            )
        )
    if data.source == "cifar10" or is_url(data.source):
        return cifar.parse_archive(fetch(data.source, data.md5, workdir))
    path = Path(data.source).expanduser()
    if path.is_dir():
        log.info(
            "note: %s is a folder, so its batch files are read as they are; the md5 check is of "
            "archives only%s.",
            path,
            f" (data.md5 = {data.md5} is not applied)" if data.md5 else "",
        )
        return cifar.parse_members(cifar.read_folder(path), path)
    return cifar.parse_archive(check_local(path, data.md5))


def describe_source(data: params.DataParams) -> str:
    """Where the data came from, in words, for every result file to carry."""
    if data.source == "synthetic":
        s = data.synthetic
        return f"synthetic: generated images (seed {s.seed}, noise {s.noise:g})"
    if data.source == "cifar10":
        return f"cifar10: {CIFAR10_URL} (md5 {data.md5 or CIFAR10_MD5})"
    return data.source + (f" (md5 {data.md5})" if data.md5 else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.download", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="the params file (params.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz data file to write")
    args = parser.parse_args(argv)

    data = params.load(args.params).data
    refuse_linked_folders(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The download (or the generated archive) lives beside the output, not in the system's
    # temporary folder: one a SIGKILL left behind is removed here, by the next run.
    for stale in args.out.parent.glob(".download-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(
        prefix=".download-", suffix=".tmp", dir=args.out.parent
    ) as tmp:
        dataset = read_source(data, Path(tmp))
    cifar.save(dataclasses.replace(dataset, source=describe_source(data)), args.out)
    log.info(
        "wrote %s: %d train and %d test images, classes %s; train labels per class %s",
        args.out,
        len(dataset.y_train),
        len(dataset.y_test),
        ", ".join(dataset.classes),
        np.bincount(dataset.y_train, minlength=len(dataset.classes)).tolist(),
    )


if __name__ == "__main__":
    run_main(main)
