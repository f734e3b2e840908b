"""The download stage's sources: local archives checked against an md5, URLs that fail clearly."""

from __future__ import annotations

import hashlib

import pytest

from cifar10_tricks import cifar
from cifar10_tricks.errors import UserError
from stages import download


def test_local_md5_mismatch_is_refused(small_archive):
    with pytest.raises(cifar.ArchiveError, match="does not match data.md5"):
        download.check_local(small_archive, "0" * 32)


def test_local_md5_match_is_accepted(small_archive):
    assert (
        download.check_local(small_archive, hashlib.md5(small_archive.read_bytes()).hexdigest())
        == small_archive
    )


def test_missing_local_file_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match="is not a file or a folder"):
        download.check_local(tmp_path / "nope.tar.gz", None)


def test_unreachable_url_names_url_and_the_way_out(tmp_path):
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: refused at once
    with pytest.raises(UserError) as err:
        download.fetch(url, None, tmp_path)
    text = str(err.value)
    assert url in text and "data.source=" in text and "synthetic" in text
    assert list(tmp_path.iterdir()) == []  # no partial download left


# --- servers that misbehave, on loopback -------------------------------------------------


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 whose handler a test sets; stopped after the test."""
    import http.server
    import threading

    handlers = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handlers["get"](self)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handlers, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    with socket.socket() as listening:  # accepts connections (the backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}/cifar-10-python.tar.gz"
        with pytest.raises(UserError, match=r"cannot download .*: no answer for 0.5 s"):
            download.fetch(url, None, tmp_path)


def test_a_server_that_never_stops_sending_is_cut_off(tmp_path, monkeypatch, server):
    handlers, base = server
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 3 * 2**20)

    def endless(req):
        req.send_response(200)
        req.end_headers()
        try:
            for _ in range(100):  # 100 MiB at most: the test ends even if the cap is broken
                req.wfile.write(bytes(2**20))
        except OSError:
            pass  # the client hung up, as it should

    handlers["get"] = endless
    with pytest.raises(cifar.ArchiveError, match=r"sent more than 3145728 bytes"):
        download.fetch(f"{base}/cifar-10-python.tar.gz", None, tmp_path)


def test_a_redirect_loop_is_reported_as_such_not_as_an_md5_failure(tmp_path, server):
    handlers, base = server

    def loop(req):
        req.send_response(302)
        req.send_header("Location", req.path)
        req.end_headers()

    handlers["get"] = loop
    with pytest.raises(UserError, match=r"HTTP 302 .*redirect") as err:
        download.fetch(f"{base}/cifar-10-python.tar.gz", "0" * 32, tmp_path)
    assert "md5" not in str(err.value)


def test_a_served_archive_is_md5_checked(tmp_path, server, small_archive):
    handlers, base = server
    blob = small_archive.read_bytes()

    def serve(req):
        req.send_response(200)
        req.send_header("Content-Length", str(len(blob)))
        req.end_headers()
        req.wfile.write(blob)

    handlers["get"] = serve
    good = hashlib.md5(blob).hexdigest()
    assert download.fetch(f"{base}/a.tar.gz", good, tmp_path).read_bytes() == blob
    with pytest.raises(cifar.ArchiveError, match="failed its md5 check"):
        download.fetch(f"{base}/a.tar.gz", "0" * 32, tmp_path)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/a b.tar.gz", "http://127.0.0.1:99999/a.tar.gz", "http://[::1/a.tar.gz"],
)
def test_a_malformed_url_is_one_clear_error(tmp_path, url):
    with pytest.raises(UserError, match="cannot download|is not a valid URL") as err:
        download.fetch(url, None, tmp_path)
    assert url in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_server_that_trickles_is_cut_off_by_the_overall_pace(tmp_path, monkeypatch, server):
    """One byte every 0.05 s: every read returns well within the timeout, so only a deadline on
    the whole download ends it (here a 0.5 s grace and 32 KiB/s)."""
    import time

    handlers, base = server
    monkeypatch.setattr(download, "GRACE_S", 0.5)

    def trickle(req):
        req.send_response(200)
        req.end_headers()
        try:
            for _ in range(200):  # 10 s at most: the test ends even if the deadline is broken
                req.wfile.write(b"x")
                req.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    handlers["get"] = trickle
    start = time.monotonic()
    with pytest.raises(UserError, match=r"bytes in 1 s, under 32 KiB/s .* was stopped"):
        download.fetch(f"{base}/cifar-10-python.tar.gz", None, tmp_path)
    assert time.monotonic() - start < 5


def test_a_full_disk_while_downloading_names_the_file(tmp_path, server):
    handlers, base = server

    def serve(req):
        req.send_response(200)
        req.end_headers()
        req.wfile.write(bytes(2**20))

    handlers["get"] = serve
    (tmp_path / "a.tar.gz").symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(OSError) as err:
        download.fetch(f"{base}/a.tar.gz", None, tmp_path)
    assert err.value.filename == str(tmp_path / "a.tar.gz") and err.value.errno == 28


def test_the_download_lives_beside_the_output_and_a_killed_ones_is_removed(tmp_path, monkeypatch):
    """A SIGKILL mid-download used to strand the partial archive in the system's temporary
    folder; it lives beside the data file now, and the next run removes what a kill left."""
    import yaml

    from tests.conftest import project_params

    params = project_params(tmp_path / "params.yaml", ["baseline"])
    raw = yaml.safe_load(params.read_text())
    raw["data"]["source"] = "synthetic"
    raw["data"]["synthetic"].update({"n_train": 50, "n_test": 20})
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    stale = tmp_path / "data" / ".download-abc.tmp"
    stale.mkdir(parents=True)
    (stale / "cifar-10-python.tar.gz").write_bytes(b"half")
    seen = []
    real = download.read_source

    def spy(data, workdir):
        seen.append(workdir)
        return real(data, workdir)

    monkeypatch.setattr(download, "read_source", spy)
    monkeypatch.chdir(tmp_path)
    download.main(["--out", "data/cifar10.npz"])
    assert seen[0].resolve().parent == tmp_path / "data" and seen[0].name.startswith(".download-")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10.npz"]
