"""Download published OFA checkpoints and convert them, once, to the native folder format.

Cache layout (root: ``$OFA_HOME``, else ``~/.cache/ofa``)::

    <root>/downloads/<name>/<file>   files as published (official .pt, mmpretrain .pth)
    <root>/vocab/                    the official BPE files (encoder.json, vocab.bpe, dict.txt)
    <root>/models/<name>/            native folder (config.json, model.safetensors, tokenizer)
    <root>/models/hf--<owner>--<repo>/  native folder of a hub repo outside the registry

``<name>`` is the registry's canonical name (see :mod:`ofa.pretrained`). A file already in the
download folder is used as it is (checksum verified when one is known), so a file fetched by hand
only has to be saved at the path that the error message of a failed download gives.

HF-hub repos (registry entries of format ``hf`` and any ``owner/name``) are not fetched here but
by ``huggingface_hub`` (:mod:`ofa.hub`), into its own cache, shared with ``transformers``, and
with its settings (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``). Only the
converted native folder lands under ``<root>/models``. A converted folder is never refreshed:
delete it to convert a newer revision of the repo.

Downloads go to ``<file>.part`` first, resume an interrupted ``.part`` with an HTTP Range request,
are checked against the known size and sha256, and are renamed into place only when complete.

URL rewriting of the files fetched here, for mirrors and tests (the first rule that applies
wins):

* ``BASE_URL_OVERRIDES``: a module-level dict ``{url prefix: replacement}``; the longest matching
  prefix is replaced.
* ``$OFA_MIRROR``: replaces the scheme and host of every URL, e.g. ``OFA_MIRROR=http://mirror:8000``
  turns ``https://huggingface.co/OFA-Sys/ofa-base/resolve/main/config.json`` into
  ``http://mirror:8000/OFA-Sys/ofa-base/resolve/main/config.json`` (a path after the host is
  kept as a prefix). The mirror must serve every file at its original path.
* ``$HF_ENDPOINT`` (the HuggingFace hub's own setting): replaces ``https://huggingface.co``
  (for a registered file on the hub that is not an HF repo entry).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CheckpointError, DownloadError, InputError
from .pretrained import VOCAB_FILES, PretrainedModel, RemoteFile, resolve

__all__ = [
    "BASE_URL_OVERRIDES",
    "DownloadError",
    "bundled_path",
    "cache_dir",
    "download_dir",
    "download_file",
    "download_pretrained",
    "fetch_hub_model",
    "fetch_pretrained",
    "fetch_vocab",
    "hub_model_dir",
    "mirror_url",
    "model_dir",
    "vocab_dir",
]

log = logging.getLogger(__name__)

ENV_HOME = "OFA_HOME"
ENV_MIRROR = "OFA_MIRROR"
ENV_HF_ENDPOINT = "HF_ENDPOINT"
HF_HOST = "https://huggingface.co"
DEFAULT_TIMEOUT = 30.0  # seconds without data before a connection counts as dead
CHUNK = 1 << 20
USER_AGENT = "ofa-vl (python urllib)"

#: ``{url prefix: replacement}``, applied by :func:`mirror_url` before ``$OFA_MIRROR``.
BASE_URL_OVERRIDES: dict[str, str] = {}


# ---------------------------------------------------------------------------- cache paths
def cache_dir() -> Path:
    """The cache root: ``$OFA_HOME`` if set, else ``~/.cache/ofa``."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else Path.home() / ".cache" / "ofa"


def download_dir(name: str) -> Path:
    """``<root>/downloads/<name>``: the published files of one registry entry."""
    return cache_dir() / "downloads" / name


def vocab_dir() -> Path:
    """``<root>/vocab``: the official BPE files, shared by all fairseq/mmpretrain entries."""
    return cache_dir() / "vocab"


def model_dir(name: str) -> Path:
    """``<root>/models/<name>``: the native folder of one registry entry."""
    return cache_dir() / "models" / name


def hub_model_dir(repo_id: str) -> Path:
    """``<root>/models/hf--<owner>--<repo>``: the native folder of a hub repo outside the
    registry (named as huggingface_hub names its cache folders; '--' is in no repo id)."""
    return cache_dir() / "models" / ("hf--" + repo_id.replace("/", "--"))


def mirror_url(url: str) -> str:
    """``url`` after ``BASE_URL_OVERRIDES``, ``$OFA_MIRROR`` or ``$HF_ENDPOINT`` (module doc)."""
    matches = [p for p in BASE_URL_OVERRIDES if url.startswith(p)]
    if matches:
        prefix = max(matches, key=len)
        return BASE_URL_OVERRIDES[prefix] + url[len(prefix):]
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if mirror:
        parts = urlsplit(url)
        rest = url[len(f"{parts.scheme}://{parts.netloc}"):]
        return mirror.rstrip("/") + rest
    endpoint = os.environ.get(ENV_HF_ENDPOINT, "").strip()
    if endpoint and (url == HF_HOST or url.startswith(HF_HOST + "/")):
        return endpoint.rstrip("/") + url[len(HF_HOST):]
    return url


# ---------------------------------------------------------------------------- one file
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<dir>/.<name>.lock`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent downloads of one file are not guarded
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _manual_hint(url: str, dest: Path) -> str:
    return (f"download {url} yourself (browser, wget, curl) and save it as {dest}, "
            "then run again")


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, got_size: int, digest: str | None, sha256: str | None,
           sha256_prefix: str | None, size: int | None) -> str | None:
    """The reason ``path`` is not the expected file, or None when it is."""
    if size is not None and got_size != size:
        return f"its size is {got_size:,} bytes, expected {size:,}"
    if sha256 is not None and digest != sha256.lower():
        return f"its sha256 is {digest}, expected {sha256.lower()}"
    if sha256_prefix is not None and not (digest or "").startswith(sha256_prefix.lower()):
        return f"its sha256 is {digest}, expected one starting with {sha256_prefix.lower()}"
    return None


class _Interrupted(Exception):
    """The transfer stopped early; what arrived is kept in the .part file."""

    def __init__(self, received: int, total: int | None, reason: str) -> None:
        super().__init__(reason)
        self.received, self.total, self.reason = received, total, reason


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a ``Content-Range: bytes a-b/N`` or ``bytes */N`` header."""
    if not value or not value.strip().startswith("bytes"):
        return None, None
    spec = value.strip()[5:].strip()
    span, _, total = spec.partition("/")
    start = span.split("-", 1)[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


class _Unavailable(Exception):
    """The server did not send the file (HTTP error, unreachable, timeout)."""


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """The response for ``url`` from byte ``offset``; None for 416 (nothing left to send)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            _, total = _content_range(e.headers.get("Content-Range"))
            e.close()
            if total == offset:
                return None
            raise _Restart() from None
        e.close()
        raise _Unavailable(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason if isinstance(e.reason, str) else (
            e.reason.strerror or str(e.reason) if isinstance(e.reason, OSError) else str(e))
        raise _Unavailable(f"{reason}; offline or the host is down?") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _Unavailable(f"{type(e).__name__}: {e}") from None
    except ValueError as e:  # malformed URL, unknown scheme
        raise _Unavailable(str(e)) from None


class _Unwritable(Exception):
    """The local disk refused the data (full, read-only, ...)."""


class _Restart(Exception):
    """The server rejected our Range; the .part file must be discarded."""


def _transfer(url: str, part: Path, dest: Path, size: int | None, hashing: bool,
              timeout: float, progress: bool) -> str | None:
    """Fetch ``url`` into ``part`` (resuming it); return the sha256 of the whole file."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        offset = 0
    h = hashlib.sha256() if hashing else None
    if offset and size is not None and offset == size:
        resp = None  # complete but never renamed: nothing to fetch
    else:
        try:
            resp = _open(url, offset, timeout)
        except _Restart:
            offset = 0
            resp = _open(url, 0, timeout)
    if resp is not None:
        start, total = None, None
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:  # another range than asked for: fetch the whole file
                resp.close()
                resp = _open(url, 0, timeout)
                start, total = None, None
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
        if resp.status != 206 or start != offset:
            offset = 0  # server ignored the Range (200): restart from zero
            total = length
        elif total is None and length is not None:
            total = offset + length
    if h is not None and offset:
        with open(part, "rb") as fh:
            remaining = offset
            while remaining and (block := fh.read(min(CHUNK, remaining))):
                h.update(block)
                remaining -= len(block)
    if resp is None:
        return h.hexdigest() if h is not None else None

    from tqdm.auto import tqdm

    received = offset
    with resp, open(part, "r+b" if offset else "wb") as out, tqdm(
            total=total or size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, file=sys.stderr, disable=None if progress else True,
            leave=False) as bar:
        out.seek(offset)
        out.truncate()
        while True:
            try:
                block = resp.read(CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise _Interrupted(received, total, f"{type(e).__name__}: {e}") from None
            if not block:
                break
            try:
                out.write(block)
            except OSError as e:
                raise _Unwritable(f"cannot write {part}: {e}") from None
            if h is not None:
                h.update(block)
            received += len(block)
            bar.update(len(block))
    if total is not None and received < total:
        raise _Interrupted(received, total, "the connection closed early")
    return h.hexdigest() if h is not None else None


def download_file(url: str, dest: str | os.PathLike[str], sha256: str | None = None,
                  sha256_prefix: str | None = None, size: int | None = None,
                  progress: bool = True, timeout: float = DEFAULT_TIMEOUT,
                  retries: int = 2, *, source_url: str | None = None) -> Path:
    """Download ``url`` (exactly this URL: no mirror rewriting) to ``dest``; return ``dest``.

    * An existing ``dest`` is not downloaded again; it is checked against ``size``/``sha256``
      and a mismatch raises :class:`DownloadError` (delete the file to fetch it again).
    * Data goes to ``dest + '.part'``; an existing ``.part`` is resumed with a Range request
      (a server that ignores Range and sends the whole file restarts it from zero).
      An interrupted transfer is resumed up to ``retries`` times, then the ``.part`` is kept
      for the next call.
    * The sha256 (computed while streaming) and the size are verified before the atomic rename;
      a mismatch deletes the ``.part`` file and raises :class:`DownloadError`.
    * HTTP errors, unreachable hosts and timeouts raise :class:`DownloadError` naming the URL
      and the exact path where a manually downloaded copy must go.
    * ``progress`` shows a tqdm bar on stderr (only on a terminal).
    * ``source_url``: the original URL when ``url`` is a mirror of it; error messages name both.
    """
    dest = Path(dest)
    hint = source_url or url
    shown = url if hint == url else f"{url} (mirror of {hint})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashing = sha256 is not None or sha256_prefix is not None
    with _locked(dest):
        if dest.is_file():
            got = dest.stat().st_size
            digest = _sha256_of(dest) if hashing and (size is None or got == size) else None
            problem = _check(dest, got, digest, sha256, sha256_prefix, size)
            if problem:
                raise DownloadError(f"{dest} exists but {problem}: it is damaged or another "
                                    f"file; delete it to download {hint} again", url=hint,
                                    dest=dest, reason=f"existing file: {problem}")
            return dest
        part = dest.with_name(dest.name + ".part")
        attempt = 0
        while True:
            try:
                digest = _transfer(url, part, dest, size, hashing, timeout, progress)
                break
            except _Unavailable as e:
                raise DownloadError(f"cannot download {shown}: {e}; {_manual_hint(hint, dest)}",
                                    url=hint, dest=dest, reason=str(e)) from None
            except _Unwritable as e:
                raise DownloadError(f"{e} (downloading {shown}); free some space or set "
                                    f"{ENV_HOME} to another folder", url=hint, dest=dest,
                                    reason=str(e)) from None
            except _Interrupted as e:
                attempt += 1
                if attempt > retries:
                    of = f" of {e.total:,}" if e.total is not None else ""
                    raise DownloadError(
                        f"download of {shown} interrupted after {e.received:,}{of} bytes "
                        f"({e.reason}); the partial file {part} is kept and the next run "
                        f"resumes it; or {_manual_hint(hint, dest)}", url=hint,
                        dest=dest, reason=f"interrupted: {e.reason}") from None
                log.info("download of %s interrupted (%s); resuming", url, e.reason)
        problem = _check(part, part.stat().st_size, digest, sha256, sha256_prefix, size)
        if problem:
            part.unlink(missing_ok=True)
            raise DownloadError(f"downloaded {shown} but {problem}; the file was deleted. "
                                "Run again to retry; if it keeps failing the server or a proxy "
                                "serves a different file", url=hint, dest=dest,
                                reason=problem)
        os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------- registry files
def _fetch_all(jobs: list[tuple[RemoteFile, Path]], progress: bool) -> list[Path]:
    """Download every (file, folder); one DownloadError listing every file that failed."""
    errors: list[DownloadError] = []
    paths = []
    for remote, folder in jobs:
        url = mirror_url(remote.url)
        try:
            paths.append(download_file(url, folder / remote.filename, sha256=remote.sha256,
                                       sha256_prefix=remote.sha256_prefix, size=remote.size,
                                       progress=progress, source_url=remote.url))
        except DownloadError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        reasons = "; ".join(dict.fromkeys(e.reason or str(e) for e in errors))
        todo = "; ".join(f"{e.url} -> {e.dest}" for e in errors)
        raise DownloadError(f"{len(errors)} files could not be downloaded ({reasons}). To fetch "
                            "them yourself, save each URL at the path after its arrow, then run "
                            f"again: {todo}")
    return paths


def fetch_vocab(progress: bool = True) -> Path:
    """Download the official BPE files once into ``<root>/vocab``; return that folder."""
    folder = vocab_dir()
    _fetch_all([(remote, folder) for remote in VOCAB_FILES], progress)
    return folder


def download_pretrained(name: str | PretrainedModel, progress: bool = True) -> Path:
    """Download the published files of an entry; return the path ``read_checkpoint`` takes.

    That is the weights file for fairseq/mmpretrain entries, the huggingface_hub cache's
    snapshot folder for HF repos and the package folder of a bundled entry.
    """
    entry = name if isinstance(name, PretrainedModel) else resolve(name)
    if entry.bundled is not None:
        return bundled_path(entry)
    if entry.hub_repo is not None:
        from .hub import download_repo

        repo_id, revision = entry.hub_repo
        return download_repo(repo_id, revision, progress=progress).folder
    folder = download_dir(entry.name)
    _fetch_all([(remote, folder) for remote in entry.files], progress)
    return folder / entry.weights.filename


def bundled_path(entry: PretrainedModel) -> Path:
    """The package folder of a bundled entry (nothing to download); InputError when an
    installation lost it."""
    path = entry.path
    assert path is not None
    if not _is_native(path):
        raise InputError(f"the model {entry.name} that ships with the package is missing "
                         f"({path}); reinstall the package")
    return path


def _is_native(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _convert_once(out: Path, convert: Callable[[], None]) -> Path:
    """``out`` when it is a complete native folder, else after ``convert()`` wrote it; a lock
    keeps two processes from converting the same model at once."""
    if _is_native(out):
        return out
    with _locked(out):
        if _is_native(out):  # another process finished it while we waited
            return out
        if out.exists() and any(out.iterdir()):
            raise DownloadError(f"{out} exists but is not a complete native folder "
                                "(config.json + model.safetensors); delete it and run again")
        convert()
    return out


def _converted(src: Path, out: Path, origin: str, delete: Path, **kwargs) -> None:
    """convert_checkpoint, with where the file came from, and what to delete to download it
    again, in its errors."""
    from .convert import convert_checkpoint

    try:
        convert_checkpoint(src, out, **kwargs)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (downloaded from {origin}; if the file is damaged, delete "
                              f"{delete} and run again)") from None


def fetch_pretrained(name: str, progress: bool = True, *, keep_download: bool = True) -> Path:
    """The native folder of a registered checkpoint, downloading and converting it if needed.

    ``name`` is anything :func:`ofa.pretrained.resolve` accepts. The first call downloads the
    files (plus the official BPE files for fairseq/mmpretrain entries; HF repos through
    huggingface_hub) and converts them once to ``<root>/models/<name>``; later calls return that
    folder without touching the network. A bundled entry's folder is in the package itself.
    ``keep_download=False`` deletes the downloaded originals after a successful conversion (not
    the huggingface_hub cache, which other programs share).
    """
    entry = resolve(name)
    if entry.bundled is not None:
        return bundled_path(entry)
    out = model_dir(entry.name)

    def convert() -> None:
        source = {"registry_name": entry.name, "task": entry.task,
                  "urls": [f.url for f in entry.files]}
        if entry.hub_repo is not None:
            from .hub import download_repo

            repo_id, revision = entry.hub_repo
            snap = download_repo(repo_id, revision, progress=progress)
            source.update(hub_repo=repo_id, hub_commit=snap.commit)
            src, vocab, origin = snap.folder, None, f"the HF hub repo {repo_id}"
            delete = snap.repo_cache  # its blobs too: a damaged blob would be linked again
        else:
            folder = download_dir(entry.name)
            jobs = [(f, vocab_dir()) for f in VOCAB_FILES] if entry.vocab == "bpe" else []
            _fetch_all(jobs + [(f, folder) for f in entry.files], progress)
            src, origin = folder / entry.weights.filename, entry.weights.url
            vocab = vocab_dir() if entry.vocab == "bpe" else None
            delete = src
        if progress:
            print(f"converting {entry.name} to the native format in {out}", file=sys.stderr)
        _converted(src, out, origin, delete, ema=entry.ema, vocab=vocab, source=source)

    _convert_once(out, convert)
    if not keep_download:
        shutil.rmtree(download_dir(entry.name), ignore_errors=True)
    return out


def fetch_hub_model(repo_id: str, progress: bool = True) -> Path:
    """The native folder of the HF-hub repo ``repo_id`` (``owner/name``, outside the registry:
    e.g. your own fine-tune), downloaded through huggingface_hub and converted once to
    :func:`hub_model_dir`; later calls return that folder without touching the network."""
    from .hub import is_repo_id

    if not is_repo_id(repo_id):  # before it names a folder
        raise InputError(f"{repo_id!r} is not a HuggingFace hub model id (owner/name)")
    out = hub_model_dir(repo_id)

    def convert() -> None:
        from .hub import download_repo

        snap = download_repo(repo_id, progress=progress)
        if progress:
            print(f"converting {repo_id} to the native format in {out}", file=sys.stderr)
        _converted(snap.folder, out, f"the HF hub repo {repo_id}", snap.repo_cache,
                   source={"hub_repo": repo_id, "hub_commit": snap.commit})

    return _convert_once(out, convert)
