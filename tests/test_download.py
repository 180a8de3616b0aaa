"""The weights registry and the resumable download, against a local HTTP server only.

The server (127.0.0.1, a free port) serves generated files, honours ``Range: bytes=N-`` and can
be told to cut a transfer short, ignore Range, stall, or answer 404. Nothing touches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_chromagan.cli import main
from napari_chromagan.errors import Cancelled, CheckpointError, WeightsNotFoundError
from napari_chromagan.weights import registry
from napari_chromagan.weights.lookup import user_weights_dir
from napari_chromagan.weights.registry import (
    REGISTRY,
    DownloadError,
    download,
    entry_path,
    entry_status,
    fetch,
)

DATA = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
DATA_SHA = hashlib.sha256(DATA).hexdigest()
MANUAL = "drive.google.com/drive/folders/12s4rbLmnjW4e8MmESbfRStGbrjOrahlW"


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=lambda: {"/file.bin": DATA})
    mode: str = "normal"  # normal | cut | ignore-range | 404 | stall
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what a handler raised, other than a hang-up


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass

    def do_GET(self):
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        requested = self.headers.get("Range")
        state.requests.append((self.path, requested))
        if state.mode == "stall":
            time.sleep(1.0)
        data = state.files.get(self.path)
        if state.mode == "404" or data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if requested and state.mode != "ignore-range":
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.mode == "cut":  # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # socketserver prints a traceback to stderr, where the tests read the CLI's messages. A
        # client that hangs up while the body is still being sent (the downloader stops reading
        # once it has what it needs; under load the server is still writing) is no error of the
        # code under test; anything else is recorded, and the fixture fails the test on it.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            self.state.errors.append(repr(sys.exc_info()[1]))


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
    assert httpd.state.errors == []  # type: ignore[attr-defined]


@pytest.fixture
def refused_url() -> str:
    """An address on a port that was just free: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/my_model_colorization.h5"


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# --------------------------------------------------------------------------- download


def test_download_reports_progress_and_verifies(server, tmp_path):
    base, state = server
    calls: list[tuple[int, int | None]] = []
    dest = tmp_path / "sub" / "file.bin"
    out = download(
        f"{base}/file.bin",
        dest,
        sha256=DATA_SHA,
        size=len(DATA),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out == dest
    assert dest.read_bytes() == DATA
    assert not _part(dest).exists()
    assert calls[0] == (0, len(DATA))
    assert calls[-1] == (len(DATA), len(DATA))
    assert len(calls) >= len(DATA) // (1 << 16)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert state.requests == [("/file.bin", None)]


@pytest.mark.parametrize(
    ("sha256", "size", "match"),
    [("0" * 64, None, "checksum did not match"), (None, len(DATA) + 1, "did not match")],
)
def test_checksum_or_size_mismatch_removes_the_file(server, tmp_path, sha256, size, match):
    base, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=match) as info:
        download(f"{base}/file.bin", dest, sha256=sha256, size=size)
    assert "file was removed" in str(info.value)
    assert not dest.exists()
    assert not _part(dest).exists()


def test_interrupted_transfer_is_kept_and_resumed_with_range(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    state.mode = "cut"
    with pytest.raises(DownloadError, match=f"cut short after {len(DATA) // 2} of {len(DATA)}"):
        download(f"{base}/file.bin", dest, sha256=DATA_SHA)
    assert not dest.exists()
    assert _part(dest).read_bytes() == DATA[: len(DATA) // 2]

    state.mode = "normal"
    calls: list[tuple[int, int | None]] = []
    download(f"{base}/file.bin", dest, sha256=DATA_SHA, progress=lambda d, t: calls.append((d, t)))
    assert state.requests[-1] == ("/file.bin", f"bytes={len(DATA) // 2}-")
    assert dest.read_bytes() == DATA
    assert not _part(dest).exists()
    assert calls[0] == (len(DATA) // 2, len(DATA))
    assert calls[-1] == (len(DATA), len(DATA))


def test_server_ignoring_range_starts_over(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(b"\0" * 1000)  # wrong bytes: appending to them would corrupt the file
    state.mode = "ignore-range"
    download(f"{base}/file.bin", dest, sha256=DATA_SHA)
    assert state.requests == [("/file.bin", "bytes=1000-")]
    assert dest.read_bytes() == DATA


def test_complete_partial_file_is_not_downloaded_again(server, tmp_path):
    """The server answers 416 (nothing after byte N) when the .part already holds the whole file."""
    base, state = server
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(DATA)
    download(f"{base}/file.bin", dest, sha256=DATA_SHA)
    assert state.requests == [("/file.bin", f"bytes={len(DATA)}-")]
    assert dest.read_bytes() == DATA


def test_http_error_refused_connection_and_timeout(server, refused_url, tmp_path):
    base, state = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing.bin", tmp_path / "a.bin")
    with pytest.raises(DownloadError, match="refused") as info:
        download(refused_url, tmp_path / "b.bin")
    assert refused_url in str(info.value)
    state.mode = "stall"
    with pytest.raises(DownloadError, match="timed out"):
        download(f"{base}/file.bin", tmp_path / "c.bin", timeout=0.2)
    assert not any(tmp_path.iterdir())  # no file and no empty .part left behind


@pytest.mark.perf
def test_a_stalled_server_times_out_promptly(server, tmp_path):
    """The time-out is per read, so a stall ends after about ``timeout`` seconds. A ``perf``
    test (``pytest -m perf``, on a quiet machine): under load the margin measures the others."""
    base, state = server
    state.mode = "stall"
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out"):
        download(f"{base}/file.bin", tmp_path / "c.bin", timeout=0.2)
    assert time.perf_counter() - start < 0.9


def test_cancel_keeps_the_partial_file(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 3 * 16384:
            cancel.set()

    with pytest.raises(Cancelled, match="resumes"):
        download(f"{base}/file.bin", dest, progress=progress, cancel=cancel, chunk=16384)
    kept = _part(dest).read_bytes()
    assert len(kept) == 3 * 16384
    assert kept == DATA[: len(kept)]
    assert not dest.exists()

    cancel.clear()
    download(f"{base}/file.bin", dest, sha256=DATA_SHA, cancel=cancel)
    assert state.requests[-1] == ("/file.bin", f"bytes={3 * 16384}-")
    assert dest.read_bytes() == DATA


def test_keyboard_interrupt_keeps_the_partial_file(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"

    def progress(done: int, total: int | None) -> None:
        if done >= 16384:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(f"{base}/file.bin", dest, progress=progress, chunk=16384)
    assert _part(dest).read_bytes() == DATA[:16384]


def test_existing_destination_is_not_overwritten(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        download(f"{base}/file.bin", dest)
    assert dest.read_bytes() == b"mine"
    assert state.requests == []
    download(f"{base}/file.bin", dest, overwrite=True)
    assert dest.read_bytes() == DATA


# --------------------------------------------------------------------------- registry and fetch


def test_registry_entries():
    imagenet = REGISTRY["chromagan-imagenet"]
    assert imagenet.kind == "keras-h5"
    assert imagenet.urls == (
        "http://gpi.upf.edu/chromagan/my_model_colorization.h5",
        "http://dev.ipol.im/~lraad/chromaGAN/model/my_model_colorization.h5",
    )
    assert imagenet.checkpoint_name == "chromagan-imagenet.pt"
    assert MANUAL in imagenet.manual_steps
    assert "import-weights my_model_colorization.h5" in imagenet.manual_steps
    assert REGISTRY["chromagan-lite0"].kind == "packaged"
    with pytest.raises(ValueError, match="unknown weights 'nope'"):
        entry_status("nope")


def test_packaged_entry(tmp_path, monkeypatch):
    # conftest points PACKAGED_WEIGHTS at a file that does not exist
    assert entry_status("chromagan-lite0") == "missing"
    assert entry_path("chromagan-lite0") is None
    with pytest.raises(WeightsNotFoundError, match="reinstall"):
        fetch("chromagan-lite0")
    shipped = tmp_path / "chromagan-lite0.pt"
    shipped.write_bytes(b"x")
    monkeypatch.setattr("napari_chromagan.weights.lookup.PACKAGED_WEIGHTS", shipped)
    assert entry_status("chromagan-lite0") == "available"
    assert entry_path("chromagan-lite0") == shipped
    assert fetch("chromagan-lite0") == shipped


def test_fetch_reports_every_failure_and_the_manual_steps(server, refused_url):
    base, _ = server
    with pytest.raises(DownloadError) as info:
        fetch("chromagan-imagenet", urls=[refused_url, f"{base}/missing.h5"])
    message = str(info.value)
    assert refused_url in message and f"{base}/missing.h5" in message
    assert "refused" in message and "HTTP 404" in message
    assert MANUAL in message
    assert "import-weights my_model_colorization.h5" in message
    assert entry_status("chromagan-imagenet") == "missing"


def test_fetch_skips_a_file_that_is_not_hdf5(server):
    base, _ = server
    with pytest.raises(DownloadError, match="not HDF5"):
        fetch("chromagan-imagenet", urls=[f"{base}/file.bin"])
    assert list(user_weights_dir().iterdir()) == []


@pytest.fixture(scope="module")
def small_keras_bytes(tmp_path_factory) -> bytes:
    pytest.importorskip("h5py")
    from test_keras_import import random_arrays, write_keras_h5

    path = tmp_path_factory.mktemp("served") / "my_model_colorization.h5"
    return write_keras_h5(path, random_arrays()).read_bytes()


def test_fetch_downloads_and_converts(server, small_keras_bytes, tmp_path):
    from test_keras_import import SMALL

    from napari_chromagan.weights.checkpoint import load_checkpoint
    from napari_chromagan.weights.keras_import import import_keras_weights

    base, state = server
    state.files["/my_model_colorization.h5"] = small_keras_bytes
    messages: list[str] = []
    calls: list[tuple[int, int | None]] = []
    path = fetch(
        "chromagan-imagenet",
        urls=[f"{base}/gone.h5", f"{base}/my_model_colorization.h5"],  # the first one fails
        config=SMALL,
        progress=lambda d, t: calls.append((d, t)),
        log=messages.append,
    )
    assert path == user_weights_dir() / "chromagan-imagenet.pt"
    assert calls[-1] == (len(small_keras_bytes), len(small_keras_bytes))
    assert any("HTTP 404" in m for m in messages)
    # the downloaded .h5 is removed once converted; only the checkpoint stays
    assert sorted(p.name for p in user_weights_dir().iterdir()) == ["chromagan-imagenet.pt"]
    assert entry_status("chromagan-imagenet") == "available"
    assert entry_path("chromagan-imagenet") == path

    (tmp_path / "ref.h5").write_bytes(small_keras_bytes)
    expected = import_keras_weights(tmp_path / "ref.h5", SMALL).state_dict()
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL
    for key, value in expected.items():
        torch.testing.assert_close(loaded.generator.state_dict()[key], value, rtol=0, atol=0)

    # already there: nothing is downloaded again unless asked
    count = len(state.requests)
    assert fetch("chromagan-imagenet", urls=[f"{base}/my_model_colorization.h5"]) == path
    assert len(state.requests) == count
    fetch(
        "chromagan-imagenet",
        urls=[f"{base}/my_model_colorization.h5"],
        config=SMALL,
        overwrite=True,
    )
    assert len(state.requests) == count + 1


def test_a_failed_conversion_keeps_the_download_and_says_where(
    server, small_keras_bytes, capsys, monkeypatch
):
    """The authors' file arrives (about 0.5 GB) but does not convert: it is kept for a retry."""
    base, state = server
    state.files["/my_model_colorization.h5"] = small_keras_bytes
    url = f"{base}/my_model_colorization.h5"
    # the registry converts with the paper's architecture; the served file is a small one
    with pytest.raises(CheckpointError) as info:
        fetch("chromagan-imagenet", urls=[url])
    kept = user_weights_dir() / "my_model_colorization.h5"
    assert kept.read_bytes() == small_keras_bytes
    assert not (user_weights_dir() / "chromagan-imagenet.pt").exists()
    message = str(info.value)
    assert f"The downloaded file is kept at {kept}" in message
    assert f"`napari-chromagan import-weights {kept}`" in message and "python -m" not in message
    # from the command line: the same, without a traceback
    assert main(["download-weights", "chromagan-imagenet", "--url", url, "-q"]) == 2
    err = capsys.readouterr().err
    assert f"kept at {kept}" in err and "import-weights" in err and "Traceback" not in err
    assert kept.read_bytes() == small_keras_bytes


def test_manual_steps_name_the_installed_command():
    """The advice names the command a user has (`napari-chromagan ...`), not `python -m ...`."""
    from napari_chromagan.weights.lookup import HOW_TO_GET_WEIGHTS

    for text in (REGISTRY["chromagan-imagenet"].manual_steps, HOW_TO_GET_WEIGHTS):
        assert "`napari-chromagan import-weights my_model_colorization.h5`" in text
        assert "python -m napari_chromagan" not in text


# --------------------------------------------------------------------------- command line


def test_cli_list(capsys, monkeypatch):
    assert main(["download-weights", "--list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert lines == {"chromagan-imagenet": "missing", "chromagan-lite0": "missing"}
    folder = user_weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chromagan-imagenet.pt").write_bytes(b"x")
    assert main(["download-weights", "--list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^chromagan-imagenet\s+available\s.*chromagan-imagenet\.pt\)$", out, re.M)


def test_cli_download(server, small_keras_bytes, capsys, monkeypatch):
    from test_keras_import import SMALL

    base, state = server
    state.files["/my_model_colorization.h5"] = small_keras_bytes
    # the registry converts with the paper's config; the served file is a small one
    monkeypatch.setattr(registry, "fetch", functools.partial(registry.fetch, config=SMALL))
    url = f"{base}/my_model_colorization.h5"
    assert main(["download-weights", "chromagan-imagenet", "--url", url]) == 0
    captured = capsys.readouterr()
    target = user_weights_dir() / "chromagan-imagenet.pt"
    assert f"chromagan-imagenet is available: {target}" in captured.out
    assert f"downloading chromagan-imagenet from {url}" in captured.err
    assert target.is_file()
    assert state.requests == [("/my_model_colorization.h5", None)]


def test_cli_errors(refused_url, capsys, monkeypatch):
    assert main(["download-weights", "chromagan-imagenet", "--url", refused_url, "-q"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and MANUAL in err and "import-weights" in err

    assert main(["download-weights"]) == 2
    assert "--list" in capsys.readouterr().err
    assert main(["download-weights", "nope"]) == 2
    assert "unknown weights 'nope'" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "fetch", interrupted)
    assert main(["download-weights", "chromagan-imagenet"]) == 130
    err = capsys.readouterr().err
    assert "partial download is kept" in err and "interrupted" in err
