"""Download published OFA checkpoints and convert them, once, to the native folder format.

Cache layout (root: ``$OFA_HOME``, else ``~/.cache/ofa``)::

    <root>/downloads/<name>/<file>   files as published (official .pt, mmpretrain .pth)
    <root>/vocab/                    the official BPE files (encoder.json, vocab.bpe, dict.txt)
    <root>/models/<name>/            native folder (config.json, model.safetensors, tokenizer)
    <root>/models/hf--<owner>--<repo>/  native folder of a hub repo outside the registry
    <root>/models/<name>/vqgan/, clip/  an entry's components (text-to-image: VQGAN, CLIP)

``<name>`` is the registry's canonical name (see :mod:`ofa.pretrained`). A file already in the
download folder is used as it is (checksum verified when one is known), so a file fetched by hand
only has to be saved at the path that the error message of a failed download gives.

HF-hub repos (registry entries of format ``hf`` and any ``owner/name``) are not fetched here but
by ``huggingface_hub`` (:mod:`ofa.hub`), into its own cache, shared with ``transformers``, and
with its settings (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``). Only the
converted native folder lands under ``<root>/models``. A converted folder is never refreshed:
delete it to convert a newer revision of the repo.

Text-to-image entries (:class:`ofa.pretrained.Component`) bring files that are no OFA weights:
they are placed, as published, in subfolders of the native folder after the conversion, each
complete or not at all (unpacked or copied beside it, then renamed into place); a later call
fills a missing one again and makes no network request when all are there. A zip bundle
(``image_gen_large_best.zip``) stays in the download folder; the OFA checkpoint is unpacked next
to it only for the conversion. Zip archives are checked before anything is unpacked: no entry
may be a symbolic link, an absolute path or climb out with ``..``, be encrypted, or expand more
than :data:`MAX_ZIP_RATIO` times (nor the whole archive); what is unpacked may not exceed the
size the archive declares for it.

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
import errno
import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CheckpointError, DownloadError, InputError
from .pretrained import (
    REGISTRY,
    VOCAB_FILES,
    VOCAB_SETS,
    Component,
    PretrainedModel,
    RemoteFile,
    resolve,
)

__all__ = [
    "BASE_URL_OVERRIDES",
    "MAX_ZIP_RATIO",
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

#: the most a zip entry (over :data:`ZIP_RATIO_FLOOR` bytes), or a whole zip archive, may expand:
#: checkpoints hardly compress (x1.1); a zip bomb expands a thousandfold
MAX_ZIP_RATIO = 100
ZIP_RATIO_FLOOR = 1 << 20


# ---------------------------------------------------------------------------- cache paths
def cache_dir() -> Path:
    """The cache root: ``$OFA_HOME`` if set, else ``~/.cache/ofa``."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else Path.home() / ".cache" / "ofa"


def download_dir(name: str) -> Path:
    """``<root>/downloads/<name>``: the published files of one registry entry."""
    return cache_dir() / "downloads" / name


def vocab_dir(kind: str = "bpe") -> Path:
    """``<root>/vocab``: the official BPE files, shared by all fairseq/mmpretrain entries;
    ``<root>/vocab-bert_cn``: the Chinese checkpoints' vocabulary (``kind="bert_cn"``)."""
    return cache_dir() / ("vocab" if kind == "bpe" else f"vocab-{kind}")


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

    That is the weights file for fairseq/mmpretrain entries (for a zip bundle: the OFA
    checkpoint unpacked next to it), the huggingface_hub cache's snapshot folder for HF repos and
    the package folder of a bundled entry. Components (VQGAN, CLIP) are not fetched here:
    :func:`fetch_pretrained` places them in the native folder.
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
    if entry.archive is not None:  # a zip bundle: the OFA checkpoint in it
        return _unpack_checkpoint(entry, folder / entry.weights.filename, progress)
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
    keeps two processes from converting the same model at once. (Components come after.)"""
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
    An entry's components (text-to-image: ``vqgan/``, ``clip/``) are placed in the folder after
    the conversion (module doc); an optional one that is not on disk yet is skipped (with a note
    on the first call) and looked for again, locally, on later calls.
    ``keep_download=False`` deletes the downloaded originals after a successful conversion (not
    the huggingface_hub cache, which other programs share).
    """
    entry = resolve(name)
    if entry.bundled is not None:
        return bundled_path(entry)
    out = model_dir(entry.name)
    first: list[bool] = []

    def convert() -> None:
        first.append(True)
        source = {"registry_name": entry.name, "task": entry.task,
                  "urls": [f.url for f in entry.files]}
        unpacked = None
        if entry.hub_repo is not None:
            from .hub import download_repo

            repo_id, revision = entry.hub_repo
            snap = download_repo(repo_id, revision, progress=progress)
            source.update(hub_repo=repo_id, hub_commit=snap.commit)
            src, vocab, origin = snap.folder, None, f"the HF hub repo {repo_id}"
            delete = snap.repo_cache  # its blobs too: a damaged blob would be linked again
        else:
            folder = download_dir(entry.name)
            vocab_files = VOCAB_SETS.get(entry.vocab, ())
            jobs = [(f, vocab_dir(entry.vocab)) for f in vocab_files]
            # the components' downloads too: one error lists every file to fetch by hand
            _fetch_all(jobs + [(f, folder) for f in entry.files] +
                       _component_jobs(entry, out), progress)
            src, origin = folder / entry.weights.filename, entry.weights.url
            vocab = vocab_dir(entry.vocab) if vocab_files else None
            delete = src
            if entry.archive is not None:
                unpacked = src = _unpack_checkpoint(entry, src, progress)
                source["archive_member"] = entry.archive
        if progress:
            print(f"converting {entry.name} to the native format in {out}", file=sys.stderr)
        try:
            _converted(src, out, origin, delete, ema=entry.ema, vocab=vocab, source=source)
        finally:
            if unpacked is not None:  # the zip keeps it
                unpacked.unlink(missing_ok=True)

    _convert_once(out, convert)
    if entry.components:
        _place_components(entry, out, progress, first=bool(first))
    if not keep_download:
        shutil.rmtree(download_dir(entry.name), ignore_errors=True)
    return out


# ---------------------------------------------------------------------------- components
def _component_jobs(entry: PretrainedModel, out: Path) -> list[tuple[RemoteFile, Path]]:
    """The downloads of the components not in ``out`` that no other entry lends."""
    folder = download_dir(entry.name)
    return [(f, folder) for c in entry.components
            if not (out / c.folder).is_dir() and _lendable(c) is None for f in c.files]


def _lendable(component: Component) -> Path | None:
    """The component folder of the entry ``component.reuse`` names, when it is on disk."""
    other = REGISTRY.get(component.reuse) if component.reuse else None
    if other is None:
        return None
    folder = model_dir(other.name) / component.folder
    return folder if folder.is_dir() and _plain_files(folder) else None


def _plain_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no second copy of a GB file), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _place_components(entry: PretrainedModel, out: Path, progress: bool, first: bool) -> None:
    """Fill every missing component folder of ``out``; nothing happens (and no request is
    made) when all are there."""
    missing = [c for c in entry.components if not (out / c.folder).is_dir()]
    if not missing:
        return
    with _locked(out):
        for c in missing:
            target = out / c.folder
            if target.is_dir():  # another process placed it while we waited
                continue
            tmp = out / f".{c.folder}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                placed = _fill(entry, c, tmp, progress)
                if placed:
                    os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if placed and progress:
                print(f"placed {entry.name}'s {c.folder}/ in {target}", file=sys.stderr)
            if not placed and first and progress and c.hint:
                print(f"ofa: note: {c.hint}", file=sys.stderr)


def _fill(entry: PretrainedModel, c: Component, tmp: Path, progress: bool) -> bool:
    """Put the component's files into ``tmp``; False for an optional one not on disk."""
    lent = _lendable(c)
    if lent is not None:
        for p in _plain_files(lent):
            _link_or_copy(p, tmp / p.name)
        return True
    if c.reuse is not None and c.optional:  # or the other entry's bundle, when downloaded
        other = REGISTRY.get(c.reuse)
        theirs = other.component(c.folder) if other is not None else None
        if other is None or theirs is None or theirs.files or not theirs.members:
            return False
        archive = download_dir(other.name) / other.weights.filename
        if not archive.is_file():
            return False
        _unpack(archive, {m: tmp / m.rsplit("/", 1)[-1] for m in theirs.members},
                other.weights.url, progress)
        return True
    if c.optional:
        return False
    folder = download_dir(entry.name)
    if c.members:
        [archive] = _fetch_all([(entry.weights, folder)], progress)  # no request when there
        _unpack(archive, {m: tmp / m.rsplit("/", 1)[-1] for m in c.members},
                entry.weights.url, progress)
    for path in _fetch_all([(f, folder) for f in c.files], progress):
        shutil.move(path, tmp / path.name)  # a large file is not kept twice
    return True


# ---------------------------------------------------------------------------- zip bundles
def _unpack_checkpoint(entry: PretrainedModel, archive: Path, progress: bool) -> Path:
    """The OFA checkpoint of the zip bundle ``archive``, unpacked next to it."""
    assert entry.archive is not None
    dest = archive.parent / entry.archive
    if not dest.is_file():  # complete files only: unpacking goes through a .part
        _unpack(archive, {entry.archive: dest}, entry.weights.url, progress)
    return dest


def _refuse(archive: Path, origin: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{archive}: {problem}; nothing was unpacked (downloaded from "
                           f"{origin}; delete it and run again to download it again)")


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_archive(zf: zipfile.ZipFile, archive: Path, origin: str) -> list[zipfile.ZipInfo]:
    """Every entry of ``zf``, after refusing the whole archive for one unsafe entry."""
    infos = zf.infolist()
    total = 0
    for info in infos:
        name = info.filename
        shown = repr(name[:200])
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
            raise _refuse(archive, origin, f"its entry {shown} points outside the folder it "
                                           "would be unpacked to (zip slip)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(archive, origin, f"its entry {shown} is a symbolic link")
        if info.flag_bits & 0x1:
            raise _refuse(archive, origin, f"its entry {shown} is encrypted")
        if (info.file_size > ZIP_RATIO_FLOOR
                and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1)):
            raise _refuse(archive, origin, f"its entry {shown} would expand from "
                                           f"{info.compress_size:,} to {info.file_size:,} bytes "
                                           f"(over {MAX_ZIP_RATIO}x: a zip bomb?)")
        total += info.file_size
    size = archive.stat().st_size
    if total > max(MAX_ZIP_RATIO * size, ZIP_RATIO_FLOOR):
        raise _refuse(archive, origin, f"its entries would expand to {total:,} bytes from "
                                       f"{size:,} (over {MAX_ZIP_RATIO}x: a zip bomb?)")
    return infos


def _find_member(infos: list[zipfile.ZipInfo], suffix: str, archive: Path,
                 origin: str) -> zipfile.ZipInfo:
    """The one file entry named ``suffix`` or ending in ``/suffix`` (any top folder)."""
    found = [i for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")
             and (i.filename == suffix or i.filename.endswith("/" + suffix))]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(i.filename for i in found[:4])
        raise _refuse(archive, origin, f"{len(found)} entries match {suffix} ({names}): "
                                       "which one is meant is unclear")
    files = [i.filename for i in infos if not i.is_dir()]
    listing = ", ".join(files[:8]) + (", ..." if len(files) > 8 else "") or "no files"
    raise _refuse(archive, origin, f"no {suffix} in it (it holds {listing}): not the "
                                   "expected bundle")


def _unpack(archive: Path, wanted: dict[str, Path], origin: str, progress: bool) -> None:
    """Unpack the members ``wanted`` names (path suffixes) to their paths, each through a
    ``.part`` file renamed when complete; one-line errors for an unsafe or damaged archive."""
    if progress:
        print(f"unpacking {', '.join(wanted)} from {archive}", file=sys.stderr)
    part = None
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = _check_archive(zf, archive, origin)
            members = {s: _find_member(infos, s, archive, origin) for s in wanted}
            for suffix, dest in wanted.items():
                info = members[suffix]
                dest.parent.mkdir(parents=True, exist_ok=True)
                free = shutil.disk_usage(dest.parent).free
                if info.file_size > free:
                    raise DownloadError(f"cannot unpack {info.filename} ({info.file_size:,} "
                                        f"bytes) from {archive}: only {free:,} bytes free in "
                                        f"{dest.parent}; free some space or set {ENV_HOME} to "
                                        "another folder")
                part = dest.with_name(dest.name + ".part")
                written = 0
                with zf.open(info) as src, open(part, "wb") as out:
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > info.file_size:
                            raise _refuse(archive, origin, f"its entry {info.filename!r} holds "
                                                           "more than the size it declares")
                        out.write(block)
                os.replace(part, dest)
                part = None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
            ValueError) as e:
        raise _refuse(archive, origin, f"not a complete zip archive ({type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''}); it is "
                                       "damaged or incomplete") from None
    except OSError as e:
        full = f"; free some space or set {ENV_HOME} to another folder" if (
            e.errno == errno.ENOSPC) else ""
        raise DownloadError(f"cannot unpack {archive}: {e}{full}") from None
    finally:
        if part is not None:
            part.unlink(missing_ok=True)


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
