"""Where the weight bytes come from: given file -> local cache -> Hub -> authors' upstream URL.

Every byte that reaches the cache has matched the manifest's sha256 first, and
reaches it by an atomic rename under a per-file lock: concurrent processes
download once and no reader ever sees a partial file.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from filelock import FileLock
from tqdm import tqdm

from . import checkpoints
from .atomic import atomic_path, atomic_write_bytes, check_writable_folder
from .errors import IntegrityError, WeightsError
from .manifest import ModelEntry, load_manifest

__all__ = [
    "cache_path",
    "convert_verified",
    "default_cache_home",
    "download",
    "download_url",
    "fetch_upstream",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

GITHUB = "https://github.com/"
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds for upstream downloads
ATTEMPTS = 4  # upstream tries in all; waits between them double from the base delay
_TRUE = {"1", "ON", "YES", "TRUE"}
PROBE_TIMEOUT = 5.0  # seconds to open a TCP connection before a download; refused or unresolvable ends it at once
_DISK_FAULTS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}
_CLI_OFFLINE_FIX = "run `fdiwn-sr download` on a connected machine and copy its cache, or pass --weights FILE"

PathLike = str | os.PathLike[str]


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def _retry_base_delay() -> float:
    return float(os.environ.get("FDIWN_SR_RETRY_BACKOFF", "1.0"))


def default_cache_home() -> Path:
    """The platform's user cache folder for fdiwn-sr (FDIWN_SR_HOME overrides it)."""
    env = os.environ.get("FDIWN_SR_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fdiwn-sr"


def cache_path(entry: ModelEntry, cache_dir: PathLike | None = None) -> Path:
    """Content-addressed: a new release never collides with an old file."""
    home = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_home()
    stem = entry.hub.filename.removesuffix(".safetensors")
    return home / "weights" / f"{stem}-{entry.sha256[:12]}.safetensors"


def _mismatch(what: str, expected: str, got: str) -> IntegrityError:
    return IntegrityError(f"sha256 mismatch for {what}: expected {expected}, got {got}; the file was not used")


def _is_verified(path: Path, sha256: str) -> bool:
    """Re-hashing 3 MB costs milliseconds: cheaper to trust than a sidecar that can go stale."""
    if not path.is_file():
        return False
    got = checkpoints.sha256_file(path)
    if got != sha256:
        logger.warning(
            "cached %s does not match its sha256 (expected %s, got %s); it will be replaced", path, sha256, got
        )
    return got == sha256


def _offline_requested(offline: bool | None) -> str | None:
    """Why we are offline (for the error message), or None when online."""
    if offline is not None:
        return "offline=True" if offline else None
    for name in ("HF_HUB_OFFLINE", "FDIWN_SR_OFFLINE"):
        if _env_true(name):
            return f"{name}={os.environ[name]}"
    return None


def _offline_error(entry: ModelEntry, target: Path, reason: str, hub_error: BaseException) -> WeightsError:
    mismatched = target.is_file()  # present but failed its sha256 check (logged)
    ours = f"{target} does not match its sha256" if mismatched else f"{target} does not exist"
    return WeightsError(
        f"weights {entry.hub.filename} ({entry.name}) are needed and offline mode is on ({reason}): {ours}, and "
        f"the Hugging Face cache has no usable copy ({_brief(hub_error)})",
        f"run `fdiwn-sr download --scale {entry.scale}` on a connected machine and copy its cache folder to "
        f"{target.parent.parent} (or point FDIWN_SR_HOME at the copy); or pass weights=PATH to a local "
        ".safetensors/.pt file; or unset HF_HUB_OFFLINE / FDIWN_SR_OFFLINE to allow downloads",
        f"unset {reason.split('=')[0]} to download, or {_CLI_OFFLINE_FIX} (FDIWN_SR_HOME={target.parent.parent})",
    )


def _cache_error(folder: Path, e: OSError) -> WeightsError:
    """A cache folder that cannot hold the weights: read-only, full, missing, or not a folder."""
    where = Path(e.filename) if getattr(e, "filename", None) else folder
    why = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}.get(
        e.errno, e.strerror or str(e)
    )
    for part in (folder, *folder.parents):  # name the real problem of a path that cannot be a folder
        if part.is_symlink() and not part.exists():
            where, why = part, f"it is a link to {os.readlink(part)}, which does not exist"
            break
        if part.exists() and not part.is_dir():
            where, why = part, "it is a file, not a folder"
            break
    return WeightsError(
        f"cannot write the weights cache at {where}: {why}",
        "set FDIWN_SR_HOME (or cache_dir=) to a writable folder with a few MB free, or pass weights=PATH",
        "set FDIWN_SR_HOME to a writable folder with a few MB free, or pass --weights FILE",
    )


def _cache_ready(folder: Path) -> None:
    """Create ``folder`` and check it takes a file, so a bad cache fails with its name and the fix."""
    try:
        check_writable_folder(folder)
    except OSError as e:
        raise _cache_error(folder, e) from None


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files and folders a killed run left for ``target``; call with its lock held (so none is live)."""
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.name == f".{target.name}.lock":
            continue
        logger.info("removing %s, left by an interrupted download", leftover)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _unreachable(url: str) -> str | None:
    """Why ``url``'s host certainly cannot be reached (refused, unknown name), or None (reachable, or unsure).

    A timeout is left to the client's own retries: it may be transient. With a
    proxy in use the host is not contacted directly, so nothing is probed.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host or (urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host)):
        return None
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except socket.gaierror as e:
        return f"cannot resolve {host} ({e.strerror})"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection"
    except OSError:
        return None
    return None


def _place(src: Path, entry: ModelEntry, target: Path) -> Path:
    """Verify ``src`` against the manifest and copy it atomically to ``target``."""
    data = src.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
        raise _mismatch(f"{entry.hub.filename} from the Hub", entry.sha256, got)
    atomic_write_bytes(target, data)
    return target


def _forget_hub_copy(path: Path) -> None:
    """Remove a bad download from the Hugging Face cache too, so the next try fetches afresh."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _from_hub(
    entry: ModelEntry,
    target: Path,
    *,
    revision: str | None,
    hf_cache: Path | None,
    endpoint: str | None,
    local_only: bool,
) -> Path:
    from huggingface_hub import constants, hf_hub_download

    from . import __version__

    kwargs: dict[str, object] = {}
    if hf_cache is not None:
        kwargs["cache_dir"] = hf_cache
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    if not local_only and (why := _unreachable(endpoint or constants.ENDPOINT)):
        raise WeightsError(f"the Hub cannot be reached: {why}")  # no client retries on a certain failure

    def get(force: bool) -> Path:
        return Path(
            hf_hub_download(
                entry.hub.repo_id,
                entry.hub.filename,
                revision=revision or entry.hub.revision,
                local_files_only=local_only,
                force_download=force,
                library_name="fdiwn-sr",
                library_version=__version__,
                **kwargs,
            )
        )

    path = get(force=False)
    try:
        return _place(path, entry, target)
    except IntegrityError:
        _forget_hub_copy(path)
        if local_only:
            raise
    # The Hugging Face cache held a damaged copy (the client does not hash its blobs): fetch it once more now.
    logger.warning("the Hugging Face cache copy of %s was damaged; downloading it again", entry.hub.filename)
    path = get(force=True)
    try:
        return _place(path, entry, target)
    except IntegrityError:
        _forget_hub_copy(path)
        raise


def _upstream_url(url: str) -> str:
    mirror = os.environ.get("FDIWN_SR_UPSTREAM_MIRROR")
    if mirror and url.startswith(GITHUB):
        return mirror.rstrip("/") + "/" + url.removeprefix(GITHUB)
    return url


class _Retryable(Exception):
    pass


def _stream_once(url: str, dest: Path, expected_size: int) -> str:
    """One GET into ``dest``; returns the sha256 of what arrived."""
    from . import __version__

    h = hashlib.sha256()
    headers = {"Accept-Encoding": "identity", "User-Agent": f"fdiwn-sr/{__version__}"}
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as r:
            if r.status_code in (408, 429) or r.status_code >= 500:
                raise _Retryable(f"HTTP {r.status_code}")
            if r.status_code != 200:
                raise WeightsError(f"download of {url} failed: HTTP {r.status_code}")
            total = int(r.headers.get("Content-Length") or expected_size)
            with (
                open(dest, "wb") as f,
                tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=None) as bar,
            ):
                for chunk in r.iter_content(1 << 16):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
                received = f.tell()
    except requests.exceptions.ChunkedEncodingError as e:
        raise _Retryable(f"transfer cut short ({e})") from e
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from e
    if received != total:
        raise _Retryable(f"transfer cut short: {received} of {total} bytes")
    return h.hexdigest()


def download_url(url: str, dest: Path, sha256: str, size: int) -> Path:
    """Stream ``url`` into ``dest`` (atomic), retrying transport failures, and verify its sha256."""
    if why := _unreachable(url):
        raise WeightsError(f"download of {url} failed: {why}")
    with atomic_path(dest) as tmp:  # makes dest's folder; replaces dest only once the bytes are verified
        for attempt in range(ATTEMPTS):
            try:
                got = _stream_once(url, tmp, size)
                break
            except _Retryable as e:
                if attempt == ATTEMPTS - 1:
                    raise WeightsError(f"download of {url} failed after {ATTEMPTS} attempts: {e}") from e
                delay = _retry_base_delay() * 2**attempt
                logger.warning("download of %s failed (%s); retrying in %.2g s", url, e, delay)
                time.sleep(delay)
        if got != sha256:
            raise _mismatch(url, sha256, got)
    return dest


def convert_verified(pt: PathLike, entry: ModelEntry, dst: PathLike) -> Path:
    """Authors' ``.pt`` -> our safetensors at ``dst``, both ends checked against the manifest."""
    pt, dst = Path(pt), Path(dst)
    got = checkpoints.sha256_file(pt)
    if got != entry.upstream.sha256:
        raise _mismatch(f"authors' checkpoint {pt}", entry.upstream.sha256, got)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.convert-") as tmp:
        out = Path(tmp) / dst.name
        got = checkpoints.convert(pt, out, scale=entry.scale, variant=entry.variant)
        if got != entry.sha256:
            raise _mismatch(f"the conversion of {pt} (a different safetensors version?)", entry.sha256, got)
        os.replace(out, dst)
    return dst


def fetch_upstream(entry: ModelEntry, dst: PathLike) -> Path:
    """Download the authors' ``.pt`` (FDIWN_SR_UPSTREAM_MIRROR aware), verify it, convert it into ``dst``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.upstream-") as tmp:
        pt = download_url(
            _upstream_url(entry.upstream.url), Path(tmp) / "model.pt", entry.upstream.sha256, entry.upstream.size
        )
        return convert_verified(pt, entry, dst)


def _brief(e: BaseException) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"


def _fetch(entry: ModelEntry, target: Path, from_hub: Callable[..., Path]) -> Path:
    """Hub first; the authors' upstream copy when the Hub cannot serve the file. A bad sha256 stops at once."""
    try:
        return from_hub(local_only=False)
    except IntegrityError:
        raise
    except OSError as e:
        if e.errno in _DISK_FAULTS:
            raise _cache_error(target.parent, e) from e
        logger.warning("%s not available from the Hub (%s); trying the authors' upstream copy", entry.name, _brief(e))
        hub_error = e
    try:
        return fetch_upstream(entry, target)
    except IntegrityError:
        raise
    except OSError as e:
        if e.errno in _DISK_FAULTS:
            raise _cache_error(target.parent, e) from e
        raise WeightsError(
            f"could not obtain {entry.hub.filename}: the Hub failed ({_brief(hub_error)}) and so did the upstream "
            f"copy ({_brief(e)})",
            "check the network, HF_ENDPOINT and FDIWN_SR_UPSTREAM_MIRROR, or pass weights=PATH",
            "check the network and HF_ENDPOINT; or pass --weights FILE; or run `fdiwn-sr download` on a connected "
            "machine, copy its cache here and set FDIWN_SR_OFFLINE=1",
        ) from e


def resolve_weights(
    scale: int,
    variant: str,
    *,
    weights: PathLike | None = None,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Return a local file (our safetensors or an authors' .pt) holding the weights.

    ``cache_dir`` replaces FDIWN_SR_HOME and also holds the Hub's cache (``hub/``)
    so that one folder is all an air-gapped machine needs; otherwise the Hub cache
    follows HF_HOME. ``offline=None`` reads HF_HUB_OFFLINE / FDIWN_SR_OFFLINE.
    ``endpoint`` overrides HF_ENDPOINT.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    entry = load_manifest().entry(scale, variant)
    target = cache_path(entry, cache_dir)
    if _is_verified(target, entry.sha256):
        return target
    from_hub = functools.partial(
        _from_hub,
        entry,
        target,
        revision=revision,
        hf_cache=Path(cache_dir).expanduser() / "hub" if cache_dir is not None else None,
        endpoint=endpoint,
    )
    offline_reason = _offline_requested(offline)
    if offline_reason:
        try:
            return from_hub(local_only=True)
        except IntegrityError as e:
            raise _offline_error(entry, target, offline_reason, e) from None
        except OSError as e:
            if e.errno in _DISK_FAULTS:
                raise _cache_error(target.parent, e) from e
            raise _offline_error(entry, target, offline_reason, e) from None
    _cache_ready(target.parent)
    try:
        with FileLock(target.with_name(f".{target.name}.lock")):
            _remove_stale_temporaries(target)
            if _is_verified(target, entry.sha256):  # another process fetched it while we waited
                return target
            return _fetch(entry, target, from_hub)
    except OSError as e:
        if isinstance(e, WeightsError) or e.errno not in _DISK_FAULTS:
            raise
        raise _cache_error(target.parent, e) from e


def download(
    scales: list[int] | tuple[int, ...] | None = None,
    variant: str = "fdiwn",
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    endpoint: str | None = None,
) -> dict[int, Path]:
    """Fill the cache ahead of time (e.g. before going offline); default: every released scale."""
    manifest = load_manifest()
    if scales is None:
        scales = sorted(e.scale for e in manifest.models.values() if e.variant == variant)
        if not scales:
            manifest.entry(4, variant)  # raises the "no pretrained weights" error
    return {s: resolve_weights(s, variant, revision=revision, cache_dir=cache_dir, endpoint=endpoint) for s in scales}
