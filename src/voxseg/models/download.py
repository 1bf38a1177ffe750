"""Pre-trained weights published by napari-cellseg3d: download once, cache, extract the `.pth`.

Each published archive is a `.tar.gz` holding one `torch.save(state_dict)` file. The archive is
downloaded to `<name>.tar.gz.part` (resumed with an HTTP Range request after an interruption),
renamed when complete, checked against its sha256 when one is known, and only its `.pth` member
is written to the cache, under a fixed name: member paths in the archive are never used, so an
archive cannot write outside the cache. Without network the user can put the archive (or the
`.pth`) in the cache by hand; the error message says exactly where.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from voxseg.version import __version__
from voxseg.errors import ConfigError, DataError
from voxseg.models.registry import resolve_model_name

log = logging.getLogger("voxseg")

#: where napari-cellseg3d publishes its weights; `VOXSEG_WEIGHTS_URL` replaces it (mirror, offline copy)
DEFAULT_BASE_URL = "https://huggingface.co/C-Achard/cellseg3d/resolve/main/"

#: model name (as in the registry) -> archive name at the base URL
WEIGHTS: dict[str, str] = {
    "TRAILMAP_MS": "TRAILMAP_latest.tar.gz",
    "SegResNet": "SegResNet_latest.tar.gz",
    "VNet": "VNet_latest.tar.gz",
    "SwinUNETR": "SwinUNetR_latest.tar.gz",
}

#: archive name -> sha256 hex digest; None: not known yet, so not checked
KNOWN_SHA256: dict[str, str | None] = {archive: None for archive in WEIGHTS.values()}

#: seconds urlopen waits to connect and for each read
TIMEOUT_S = 30.0

_CHUNK = 1 << 16


def cache_dir() -> Path:
    """voxseg's cache folder: `$VOXSEG_CACHE`, else the platform's user cache folder + `voxseg`.

    Written by hand (no platformdirs dependency) following each platform's convention.
    """
    override = os.environ.get("VOXSEG_CACHE")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "voxseg" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "voxseg"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "voxseg"


def weights_dir() -> Path:
    """The folder that holds downloaded archives and extracted `.pth` files."""
    return cache_dir() / "weights"


def _published_name(model: str) -> str:
    """Canonical name of a model with published weights; spelled as the registry accepts it."""
    try:
        name = resolve_model_name(model)
    except ConfigError:
        name = str(model)
    if name in WEIGHTS:
        return name
    raise DataError(
        f"--pretrained: no published weights for {model}; models with weights: {', '.join(WEIGHTS)}"
    )


def weights_url(model: str) -> str:
    """URL of the model's archive: `$VOXSEG_WEIGHTS_URL` (or the default base) + archive name."""
    base = os.environ.get("VOXSEG_WEIGHTS_URL") or DEFAULT_BASE_URL
    return base.rstrip("/") + "/" + WEIGHTS[_published_name(model)]


def _archive_path(model: str) -> Path:
    return weights_dir() / WEIGHTS[_published_name(model)]


def weights_path(model: str) -> Path:
    """Where the model's extracted `.pth` lives in the cache (whether or not it is there yet)."""
    archive = WEIGHTS[_published_name(model)]
    return weights_dir() / (archive.removesuffix(".tar.gz") + ".pth")


def weights_table() -> list[dict[str, Any]]:
    """One row per model with published weights, for `voxseg weights list`.

    Keys: model, url, path (the `.pth` in the cache), cached (bool), size (bytes, None if not cached).
    """
    rows = []
    for model in WEIGHTS:
        path = weights_path(model)
        cached = path.is_file()
        rows.append(
            {
                "model": model,
                "url": weights_url(model),
                "path": path,
                "cached": cached,
                "size": path.stat().st_size if cached else None,
            }
        )
    return rows


def fetch_weights(model: str, progress: bool = True) -> Path:
    """Path of the model's pre-trained state dict, downloading and extracting it on first use.

    A cached `.pth` is returned without any network access; an archive placed in the cache by hand
    is extracted without network access. `progress` shows a byte progress bar on a terminal.
    """
    name = _published_name(model)
    target = weights_path(name)
    if target.is_file():
        log.info("using cached weights %s", target)
        return target
    archive = _archive_path(name)
    url = weights_url(name)
    downloaded = not archive.is_file()
    if downloaded:
        _download(url, archive, target, progress)
    else:
        log.info("using weights archive %s", archive)
    try:
        _check_sha256(archive, KNOWN_SHA256.get(archive.name))
        _extract_pth(archive, target)
    except DataError as error:
        # A bad download is useless and would block the next try; a file the user placed stays.
        if downloaded:
            archive.unlink(missing_ok=True)
            raise DataError(f"{error}; the download was deleted") from None
        raise DataError(f"{error}; replace or delete that file") from None
    archive.unlink()
    log.info("extracted weights to %s", target)
    return target


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _reason(error: BaseException) -> str:
    """One-line reason for a failed download or file operation, e.g. `HTTP 404: Not Found`."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}: {_one_line(error.reason)}"
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return f"timed out after {TIMEOUT_S:g} s"
    if isinstance(error, urllib.error.URLError):
        if isinstance(error.reason, TimeoutError):
            return f"timed out after {TIMEOUT_S:g} s"
        reason = error.reason
        if isinstance(reason, OSError) and reason.strerror:
            return _one_line(reason.strerror)
        return _one_line(reason)
    if isinstance(error, OSError) and error.strerror:
        return _one_line(error.strerror)
    return _one_line(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)


def _download_failed(url: str, archive: Path, target: Path, reason: str) -> DataError:
    return DataError(
        f"cannot download {url} ({reason}); download it elsewhere and place it at {archive} "
        f"(or the extracted .pth at {target})"
    )


def _download(url: str, archive: Path, target: Path, progress: bool) -> None:
    """Download `url` to `archive` through `archive.part`, resuming a `.part` left by an interruption."""
    part = archive.with_name(archive.name + ".part")
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the weights cache {archive.parent}: {_reason(error)}") from None
    log.info("downloading %s to %s", url, archive)
    # Second attempt (from zero) only when the server rejects or garbles the resume request.
    for resume in (True, False):
        start = part.stat().st_size if resume and part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": f"voxseg/{__version__}"})
        if start:
            request.add_header("Range", f"bytes={start}-")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                if start and response.status == 206:
                    if _range_start(response.headers.get("Content-Range")) != start:
                        continue
                    offset = start
                else:  # 200: the server ignored Range, so its body is the whole file
                    offset = 0
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else None
                size = _save(response, part, offset, total, archive.name, progress)
        except urllib.error.HTTPError as error:
            if error.code == 416 and start:
                # Range not satisfiable: the .part may already be whole (stopped before the rename).
                if _range_total(error.headers.get("Content-Range")) == start:
                    break
                continue
            raise _download_failed(url, archive, target, _reason(error)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise _download_failed(url, archive, target, _reason(error)) from None
        if total is not None and size != total:
            raise _download_failed(
                url, archive, target, f"stopped after {size} of {total} bytes; run again to resume"
            )
        break
    else:
        raise _download_failed(
            url, archive, target, "the server answered the resume request with a wrong range"
        )
    os.replace(part, archive)


def _range_start(content_range: str | None) -> int | None:
    """First byte of `Content-Range: bytes START-END/TOTAL`, None if absent or malformed."""
    try:
        return int(str(content_range).split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _range_total(content_range: str | None) -> int | None:
    """TOTAL of `Content-Range: bytes */TOTAL` (a 416 answer), None if absent or malformed."""
    try:
        return int(str(content_range).rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def _save(response: IO[bytes], part: Path, offset: int, total: int | None, label: str, progress: bool) -> int:
    """Write the response body to `part` from byte `offset`; return the size of `part`.

    Read errors propagate (the caller reports them as download failures); write errors become a
    DataError naming the file, since no download from elsewhere fixes a full disk.
    """
    try:
        out = open(part, "ab" if offset else "wb")  # noqa: SIM115 - closed below, after the read loop
    except OSError as error:
        raise DataError(f"cannot write {part}: {_reason(error)}") from None
    with (
        out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            disable=None if progress else True,
            leave=False,
        ) as bar,
    ):
        size = offset
        while chunk := response.read(_CHUNK):
            try:
                out.write(chunk)
            except OSError as error:
                raise DataError(f"cannot write {part}: {_reason(error)}") from None
            size += len(chunk)
            bar.update(len(chunk))
    return size


def _check_sha256(archive: Path, expected: str | None) -> None:
    """Refuse an archive whose sha256 is not the published one (corrupt or tampered download)."""
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(archive, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected.lower():
        raise DataError(f"{archive}: sha256 mismatch, expected {expected.lower()}, got {actual}")


def _extract_pth(archive: Path, target: Path) -> None:
    """Write the archive's single `.pth` member to `target` (atomically; member paths are ignored)."""
    temp: Path | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".pth")]
            if len(members) != 1:
                found = ", ".join(m.name for m in members) or "none"
                raise DataError(f"{archive}: expected exactly one .pth file in the archive, found {found}")
            source = tar.extractfile(members[0])
            if source is None:
                raise DataError(f"{archive}: cannot read {members[0].name} from the archive")
            descriptor, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
            temp = Path(name)
            with os.fdopen(descriptor, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
        os.replace(temp, target)
        temp = None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{archive}: cannot extract the weights ({_reason(error)})") from None
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
