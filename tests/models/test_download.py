"""Pre-trained weights download: a real local HTTP server, real archives, real cache.

Nothing in pooch or requests is mocked: the server runs on 127.0.0.1 in a thread and records every
request, so "no network" is checked as "the server saw no request".
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import socket
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest
import torch

from voxseg.errors import DataError
from voxseg.models import download
from voxseg.models.download import (
    WEIGHTS,
    cache_dir,
    fetch_weights,
    weights_dir,
    weights_path,
    weights_table,
    weights_url,
)
from voxseg.version import __version__

ARCHIVE = "SegResNet_latest.tar.gz"


# -- a small HTTP server ---------------------------------------------------------------------------


class _WeightsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (path, User-Agent header)
        self.truncate_at: int | None = None  # stop sending after this byte of the file, then hang up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/weights"  # no trailing slash on purpose


class _FileHandler(BaseHTTPRequestHandler):
    """GET of files under the server's root (200 or 404)."""

    server: _WeightsServer

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        server = self.server
        server.requests.append((self.path, self.headers.get("User-Agent")))
        path = server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if server.truncate_at is None else data[: server.truncate_at])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_WeightsServer]:
    """A server for tmp_path/remote; VOXSEG_WEIGHTS_URL points at it, VOXSEG_CACHE at tmp_path/cache."""
    (tmp_path / "remote" / "weights").mkdir(parents=True)
    httpd = _WeightsServer(tmp_path / "remote")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("VOXSEG_WEIGHTS_URL", httpd.url)
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# -- archives -----------------------------------------------------------------------------------------


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 2, 3).state_dict()


def _pth_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def make_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """Write a .tar.gz of `members` (name -> bytes) and symlinks (name -> target); return its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path.read_bytes()


@pytest.fixture
def published(tmp_path: Path) -> Callable[..., bytes]:
    """Factory: publish an archive on the server; default: a state dict in a subfolder."""

    def publish(members: dict[str, bytes] | None = None, name: str = ARCHIVE, **kwargs: object) -> bytes:
        members = {"SegResNet/model_best.pth": _pth_bytes(_state_dict())} if members is None else members
        return make_archive(tmp_path / "remote" / "weights" / name, members, **kwargs)  # type: ignore[arg-type]

    return publish


def _assert_weights(path: Path) -> None:
    loaded = torch.load(path, weights_only=True)
    expected = _state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- download, cache ---------------------------------------------------------------------------------


def test_first_fetch_downloads_and_extracts(
    server: _WeightsServer, published: Callable[..., bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published()
    with caplog.at_level(logging.INFO, logger="voxseg"):
        path = fetch_weights("SegResNet")
    assert path == tmp_path / "cache" / "weights" / "SegResNet_latest.pth"
    _assert_weights(path)
    assert server.requests == [(f"/weights/{ARCHIVE}", f"voxseg/{__version__}")]
    assert sorted(p.name for p in path.parent.iterdir()) == ["SegResNet_latest.pth"]  # archive, temp gone
    assert f"downloading {server.url}/{ARCHIVE} to {path.parent / ARCHIVE}" in caplog.text


def test_second_fetch_makes_no_request(
    server: _WeightsServer, published: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    published()
    first = fetch_weights("segresnet", progress=False)  # names as the registry accepts them
    with caplog.at_level(logging.INFO, logger="voxseg"):
        second = fetch_weights("SegResNet")
    assert first == second
    assert len(server.requests) == 1
    assert f"using cached weights {second}" in caplog.text


def test_interrupted_download_leaves_nothing_and_restarts(
    server: _WeightsServer, published: Callable[..., bytes]
) -> None:
    """pooch cannot resume: the partial file is deleted and the next fetch downloads from zero."""
    data = published()
    server.truncate_at = len(data) // 3
    with pytest.raises(DataError, match="cannot download") as info:
        fetch_weights("SegResNet")
    assert "\n" not in str(info.value)
    assert not list(weights_dir().iterdir())
    server.truncate_at = None
    _assert_weights(fetch_weights("SegResNet"))
    assert [path for path, _ in server.requests] == [f"/weights/{ARCHIVE}"] * 2


def test_matching_sha256_is_accepted(
    server: _WeightsServer, published: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = published()
    monkeypatch.setitem(download.KNOWN_SHA256, ARCHIVE, hashlib.sha256(data).hexdigest().upper())
    _assert_weights(fetch_weights("SegResNet"))


# -- failures -----------------------------------------------------------------------------------------


def test_server_down_names_url_and_cache_path(
    server: _WeightsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/weights/"
    monkeypatch.setenv("VOXSEG_WEIGHTS_URL", url)
    with pytest.raises(DataError) as info:
        fetch_weights("VNet")
    message = str(info.value)
    cache = tmp_path / "cache" / "weights"
    assert "\n" not in message
    assert message.startswith(f"cannot download {url}VNet_latest.tar.gz (")
    assert f"place it at {cache / 'VNet_latest.tar.gz'}" in message
    assert str(cache / "VNet_latest.pth") in message
    assert not (cache / "VNet_latest.pth").exists()


def test_http_404(server: _WeightsServer) -> None:
    with pytest.raises(DataError, match=r"cannot download .*VNet_latest\.tar\.gz \(HTTP 404: Not Found\)"):
        fetch_weights("VNet")
    assert not list(weights_dir().glob("VNet*"))


def test_timeout(server: _WeightsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("VOXSEG_WEIGHTS_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
        with pytest.raises(DataError, match=r"\(timed out after 0\.2 s\)"):
            fetch_weights("SegResNet")


def test_sha256_mismatch_deletes_download(
    server: _WeightsServer, published: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = published()
    monkeypatch.setitem(download.KNOWN_SHA256, ARCHIVE, "0" * 64)
    with pytest.raises(DataError) as info:
        fetch_weights("SegResNet")
    message = str(info.value)
    assert ARCHIVE in message and "0" * 64 in message and hashlib.sha256(data).hexdigest() in message
    assert not list(weights_dir().iterdir())  # neither archive, nor .part, nor .pth


@pytest.mark.parametrize(
    "members",
    [
        {"a/one.pth": b"1", "b/two.pth": b"2"},
        {"README.txt": b"no weights here"},
    ],
    ids=["two-pth", "no-pth"],
)
def test_archive_needs_exactly_one_pth(
    server: _WeightsServer, published: Callable[..., bytes], members: dict[str, bytes]
) -> None:
    published(members)
    with pytest.raises(DataError, match=rf"{ARCHIVE}: expected exactly one \.pth file"):
        fetch_weights("SegResNet")
    assert not list(weights_dir().iterdir())


def test_symlink_member_is_not_followed(server: _WeightsServer, published: Callable[..., bytes]) -> None:
    published({}, links={"model.pth": "/etc/passwd"})
    with pytest.raises(DataError, match="found none"):
        fetch_weights("SegResNet")


def test_corrupt_archive(server: _WeightsServer, tmp_path: Path) -> None:
    (tmp_path / "remote" / "weights" / ARCHIVE).write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match=rf"{ARCHIVE}: cannot extract the weights"):
        fetch_weights("SegResNet")
    assert not list(weights_dir().iterdir())


def test_member_path_is_never_used(
    server: _WeightsServer, published: Callable[..., bytes], tmp_path: Path
) -> None:
    published({"../../evil.pth": _pth_bytes(_state_dict())})
    path = fetch_weights("SegResNet")
    _assert_weights(path)
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {path, tmp_path / "remote" / "weights" / ARCHIVE}


def test_archive_placed_by_hand_needs_no_network(
    server: _WeightsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VOXSEG_WEIGHTS_URL", f"http://127.0.0.1:{_closed_port()}")
    make_archive(weights_dir() / "SwinUNetR_latest.tar.gz", {"swin/w.pth": _pth_bytes(_state_dict())})
    path = fetch_weights("SwinUNETR")
    assert path == weights_dir() / "SwinUNetR_latest.pth"
    _assert_weights(path)
    assert not (weights_dir() / "SwinUNetR_latest.tar.gz").exists()


def test_archive_placed_by_hand_with_wrong_sha256_is_kept(
    server: _WeightsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = weights_dir() / ARCHIVE
    data = make_archive(archive, {"w.pth": _pth_bytes(_state_dict())})
    monkeypatch.setitem(download.KNOWN_SHA256, ARCHIVE, "f" * 64)
    with pytest.raises(DataError) as info:
        fetch_weights("SegResNet")
    message = str(info.value)
    assert message == (
        f"{archive}: sha256 mismatch, expected {'f' * 64}, got {hashlib.sha256(data).hexdigest()}; "
        "replace or delete that file"
    )
    assert archive.exists() and not weights_path("SegResNet").exists()
    assert server.requests == []


def test_bad_archive_placed_by_hand_is_kept(server: _WeightsServer) -> None:
    archive = weights_dir() / "VNet_latest.tar.gz"
    make_archive(archive, {"notes.txt": b"x"})
    with pytest.raises(DataError, match="replace or delete that file"):
        fetch_weights("VNet")
    assert archive.exists()
    assert server.requests == []


@pytest.mark.parametrize("model", ["TRAILMAP", "SegResNetDS", "NoSuchNet"])
def test_model_without_weights(model: str) -> None:
    with pytest.raises(DataError) as info:
        fetch_weights(model)
    assert str(info.value) == (
        f"--pretrained: no published weights for {model}; "
        "models with weights: SegResNet, VNet, TRAILMAP_MS, SwinUNETR"
    )


# -- names, URLs, cache folder ------------------------------------------------------------------------


def test_urls_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXSEG_WEIGHTS_URL", raising=False)
    assert (
        weights_url("swinunetr")
        == "https://huggingface.co/C-Achard/cellseg3d/resolve/main/SwinUNetR_latest.tar.gz"
    )
    assert weights_url("trailmap-ms").endswith("/main/TRAILMAP_latest.tar.gz")
    monkeypatch.setenv("VOXSEG_WEIGHTS_URL", "http://mirror/w")
    assert weights_url("VNet") == "http://mirror/w/VNet_latest.tar.gz"
    monkeypatch.setenv("VOXSEG_WEIGHTS_URL", "http://mirror/w/")
    assert weights_url("VNet") == "http://mirror/w/VNet_latest.tar.gz"


def test_weights_table(server: _WeightsServer, published: Callable[..., bytes]) -> None:
    published()
    before = weights_table()
    assert [row["model"] for row in before] == list(WEIGHTS)
    assert not any(row["cached"] for row in before)
    path = fetch_weights("SegResNet")
    rows = {row["model"]: row for row in weights_table()}
    assert rows["SegResNet"] == {
        "model": "SegResNet",
        "url": f"{server.url}/{ARCHIVE}",
        "path": path,
        "cached": True,
        "size": path.stat().st_size,
    }
    assert rows["VNet"]["cached"] is False and rows["VNet"]["size"] is None
    assert rows["VNet"]["path"] == weights_path("VNet")


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert weights_dir() == tmp_path / "mine" / "weights"
    monkeypatch.delenv("VOXSEG_CACHE")
    assert cache_dir() == Path(platformdirs.user_cache_dir("voxseg", appauthor=False))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders are the Linux convention")
def test_cache_dir_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOXSEG_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "voxseg"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir() == tmp_path / "home" / ".cache" / "voxseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "voxseg"


# -- through the command line: `voxseg train --pretrained`, `voxseg weights` ------------------------------


def test_cli_pretrained_downloads_once_then_uses_the_cache(
    server: _WeightsServer, tmp_path: Path, make_dataset: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    """TRAILMAP_MS starts from served weights; the second run makes no request; offline names the cache."""
    from voxseg.cli import main
    from voxseg.models.registry import build_model

    state = {
        k: (torch.randn_like(v) if v.is_floating_point() else v)
        for k, v in build_model("TRAILMAP_MS").state_dict().items()
    }
    make_archive(
        server.root / "weights" / "TRAILMAP_latest.tar.gz",
        {"TRAILMAP_latest/TRAILMAP_latest.pth": _pth_bytes(state)},
    )
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    base = [
        "train",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--results",
        str(tmp_path / "r"),
        "--model",
        "TRAILMAP_MS",
        "--pretrained",
        "--epochs",
        "1",
        "--patch-size",
        "16",
        "--samples-per-image",
        "1",
    ]
    assert main([*base, "--run-name", "first"]) == 0
    assert len(server.requests) == 1
    log = (tmp_path / "r" / "first" / "train.log").read_text()
    assert "weights: published napari-cellseg3d weights" in log
    assert torch.load(weights_path("TRAILMAP_MS"), weights_only=True).keys() == state.keys()
    assert main([*base, "--run-name", "second"]) == 0
    assert len(server.requests) == 1, "the second run must use the cache"

    weights_path("TRAILMAP_MS").unlink()
    server.shutdown()
    server.server_close()
    capsys.readouterr()
    assert main([*base, "--run-name", "offline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # "downloading ..." then the one error line
    errors = [line for line in err if line.startswith("error")]
    assert len(errors) == 1 and errors[0] == err[-1] and "Traceback" not in "".join(err)
    assert str(weights_dir() / "TRAILMAP_latest.tar.gz") in errors[0] and server.url in errors[0]
    assert not (tmp_path / "r" / "offline").exists()


def test_cli_weights_list_and_fetch(server: _WeightsServer, capsys: pytest.CaptureFixture[str]) -> None:
    from voxseg.cli import main

    make_archive(server.root / "weights" / ARCHIVE, {"SegResNet_latest.pth": _pth_bytes(_state_dict())})
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert "SegResNet" in listing and "not cached" in listing and str(cache_dir()) in listing
    assert main(["weights", "fetch", "SegResNet"]) == 0
    assert weights_path("SegResNet").is_file()
    main(["weights", "list"])
    assert re.search(r"SegResNet\s+cached", capsys.readouterr().out)
