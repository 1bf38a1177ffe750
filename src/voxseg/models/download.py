"""Pre-trained weights published by napari-cellseg3d: download once, cache, extract the `.pth`.

Libraries do the generic parts: pooch downloads (to a temporary file, checks the sha256 when one is
known, moves it into place, draws the progress bar) and platformdirs names the platform's cache
folder. pooch cannot resume a partial download, so an interrupted download starts again from zero.
Each published archive is a `.tar.gz` holding one `torch.save(state_dict)` file; only that member is
written to the cache, under a fixed name: member paths are never used, so an archive cannot write
outside the cache. Without network the user can put the archive (or the `.pth`) in the cache by
hand; the error message says exactly where.
"""

from __future__ import annotations

import logging
import os
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import platformdirs
import pooch
import requests

from voxseg.errors import ConfigError, DataError
from voxseg.models.registry import MODELS, PUBLISHED_MODELS, resolve_model_name
from voxseg.runtime.files import replacing
from voxseg.version import __version__

log = logging.getLogger("voxseg")

#: where napari-cellseg3d publishes its weights; `VOXSEG_WEIGHTS_URL` replaces it (mirror, offline copy)
DEFAULT_BASE_URL = "https://huggingface.co/C-Achard/cellseg3d/resolve/main/"

#: model name (as in the registry) -> archive name at the base URL
WEIGHTS: dict[str, str] = {name: str(MODELS[name].weights_archive) for name in PUBLISHED_MODELS}

#: archive name -> sha256 hex digest; None: not known yet, so not checked
KNOWN_SHA256: dict[str, str | None] = {archive: None for archive in WEIGHTS.values()}

#: seconds the download waits to connect and for each read
TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """voxseg's cache folder: `$VOXSEG_CACHE`, else the platform's user cache folder for `voxseg`."""
    override = os.environ.get("VOXSEG_CACHE")
    if override:
        return Path(override).expanduser()
    # appauthor=False: `%LOCALAPPDATA%\voxseg\Cache` on Windows, not `...\voxseg\voxseg\Cache`.
    return Path(platformdirs.user_cache_dir("voxseg", appauthor=False))


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


def weights_path(model: str) -> Path:
    """Where the model's extracted `.pth` lives in the cache (whether or not it is there yet)."""
    return weights_dir() / (WEIGHTS[_published_name(model)].removesuffix(".tar.gz") + ".pth")


def weights_table() -> list[dict[str, Any]]:
    """One row per model with published weights, for `voxseg weights list`.

    Keys: model, url, path (the `.pth` in the cache), cached (bool), size (bytes, None if not cached).
    """
    rows = []
    for model in WEIGHTS:
        path = weights_path(model)
        cached = path.is_file()
        size = path.stat().st_size if cached else None
        rows.append({"model": model, "url": weights_url(model), "path": path, "cached": cached, "size": size})
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
    archive = weights_dir() / WEIGHTS[name]
    expected = KNOWN_SHA256.get(archive.name)
    downloaded = not archive.is_file()
    if downloaded:
        _download(weights_url(name), archive, target, expected, progress)  # pooch checks the sha256
    else:
        log.info("using weights archive %s", archive)
        actual = pooch.file_hash(str(archive)) if expected is not None else None
        if expected is not None and actual != expected.lower():
            raise DataError(
                f"{archive}: sha256 mismatch, expected {expected.lower()}, got {actual}; "
                "replace or delete that file"
            )
    try:
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
    """One-line reason for a failed download, e.g. `HTTP 404: Not Found`, `Connection refused`."""
    response = getattr(error, "response", None)
    if isinstance(error, requests.HTTPError) and response is not None:
        return f"HTTP {response.status_code}: {_one_line(response.reason)}"
    cause: BaseException | None = error
    for _ in range(8):  # requests wraps urllib3, which wraps the socket error
        if cause is None:
            break
        if isinstance(cause, (TimeoutError, requests.Timeout)):
            return f"timed out after {TIMEOUT_S:g} s"
        if isinstance(cause, OSError) and cause.strerror:
            return _one_line(cause.strerror)
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
    detail: object = error  # ChunkedEncodingError(ProtocolError("Connection broken: ...")): the text
    while isinstance(detail, BaseException) and detail.args:
        detail = detail.args[0]
    return _one_line(detail if isinstance(detail, str) and detail else type(error).__name__)


def _download(url: str, archive: Path, target: Path, expected: str | None, progress: bool) -> None:
    """Download `url` to `archive` with pooch: a temporary file, the sha256 check, then the move."""
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the weights cache {archive.parent}: {_reason(error)}") from None
    log.info("downloading %s to %s", url, archive)
    downloader = pooch.HTTPDownloader(
        progressbar=progress and sys.stderr is not None and sys.stderr.isatty(),
        chunk_size=1 << 16,
        timeout=TIMEOUT_S,
        headers={"User-Agent": f"voxseg/{__version__}"},
    )
    pooch_log = pooch.get_logger()  # its INFO lines repeat ours and give advice meant for pooch users
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    try:
        pooch.retrieve(url, expected, fname=archive.name, path=archive.parent, downloader=downloader)
    except requests.RequestException as error:
        raise DataError(
            f"cannot download {url} ({_reason(error)}); download it elsewhere and place it at {archive} "
            f"(or the extracted .pth at {target})"
        ) from None
    except ValueError as error:  # pooch: sha256 mismatch (it deleted the download)
        raise DataError(f"{url}: {_one_line(error)}") from None
    except OSError as error:
        raise DataError(f"cannot write {archive}: {_reason(error)}") from None
    finally:
        pooch_log.setLevel(level)


def _extract_pth(archive: Path, target: Path) -> None:
    """Write the archive's single `.pth` member to `target` (atomically; member paths are ignored)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".pth")]
            if len(members) != 1:
                found = ", ".join(m.name for m in members) or "none"
                raise DataError(f"{archive}: expected exactly one .pth file in the archive, found {found}")
            source = tar.extractfile(members[0])
            if source is None:
                raise DataError(f"{archive}: cannot read {members[0].name} from the archive")
            with replacing(target) as temp, open(temp, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{archive}: cannot extract the weights ({_reason(error)})") from None
