"""Fetch OFA checkpoints in the HF-transformers layout from the HuggingFace hub, through
``huggingface_hub``: the files land in its cache (shared with ``transformers``) and its settings
apply, read at each call (as ``$OFA_HOME`` is), so a change of ``os.environ`` after import counts:

* ``HF_ENDPOINT``: the hub, or a mirror of it (default ``https://huggingface.co``);
* ``HF_HUB_CACHE``, else ``HF_HOME``/hub: the cache (default ``~/.cache/huggingface/hub``);
* ``HF_HUB_OFFLINE=1``: use the cache only, never the network;
* ``HF_TOKEN`` (or the token ``hf auth login`` stored): sent for private and gated repos.

A repo must hold ``config.json``, ``vocab.json``, ``merges.txt`` and the weights as
``model.safetensors`` or ``pytorch_model.bin`` (the first one it has); nothing else is fetched.
Every failure is one :class:`~ofa.errors.OFAError` line: an unknown repo, a missing file or a
refused token is an :class:`~ofa.errors.InputError`, a hub that cannot be reached (or offline
mode with a cold cache) a :class:`~ofa.download.DownloadError`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import DownloadError, InputError, OFAError

__all__ = ["REPO_FILES", "WEIGHT_FILES", "HubSnapshot", "RepoNotFoundError", "download_repo",
           "is_repo_id"]

REPO_FILES = ("config.json", "vocab.json", "merges.txt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first the repo has is taken
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# the hub's rule for repo ids (huggingface_hub.utils.validate_repo_id): owner/name, each
# [A-Za-z0-9._-] not starting with a dot or dash, no '--' or '..', at most 96 characters
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("1", "on", "yes", "true")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub model id ``owner/name`` (not whether it exists);
    names that end like a checkpoint file (``.pt``, ``.bin``, ...) are taken for paths."""
    return (len(name) <= 96 and _REPO_ID.match(name) is not None and "--" not in name
            and ".." not in name and not name.lower().endswith((*CHECKPOINT_SUFFIXES, ".git")))


class RepoNotFoundError(InputError):
    """The hub has no repo of that id, or none this token may read."""

    def __init__(self, repo_id: str, endpoint: str) -> None:
        super().__init__(f"no model {repo_id!r} on the HF hub ({endpoint}): check the name; a "
                         "private repo needs HF_TOKEN set to a token that may read it")
        self.repo_id, self.endpoint = repo_id, endpoint


@dataclass(frozen=True)
class HubSnapshot:
    """The files of one repo at one commit, in the huggingface_hub cache."""

    repo_id: str
    commit: str
    folder: Path  # the cache's snapshot folder: REPO_FILES and one of WEIGHT_FILES

    @property
    def repo_cache(self) -> Path:
        """The repo's folder in the cache (``models--<owner>--<name>``: snapshots, blobs)."""
        return self.folder.parent.parent


@dataclass(frozen=True)
class _Settings:
    endpoint: str | None  # None: huggingface_hub's default
    cache_dir: str | None  # None: huggingface_hub's default
    offline: bool

    def shown_endpoint(self) -> str:
        from huggingface_hub import constants

        return self.endpoint or constants.ENDPOINT

    def shown_cache(self) -> str:
        from huggingface_hub import constants

        return self.cache_dir or constants.HF_HUB_CACHE


def _settings() -> _Settings:
    """huggingface_hub's environment variables as they are now (it reads them at import)."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    cache = next((os.environ[v] for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
                  if os.environ.get(v)), None)
    if cache is None and os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    if cache is not None:
        cache = os.path.expandvars(os.path.expanduser(cache))
    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    offline = raw.strip().lower() in _TRUE if raw is not None else constants.HF_HUB_OFFLINE
    return _Settings(endpoint, cache, offline)


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """huggingface_hub's bars off for the block unless ``show`` (its switch is global)."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if show or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _error(e: Exception, repo_id: str, filename: str, revision: str, s: _Settings) -> OFAError:
    """One line for a huggingface_hub exception: what failed and what to do."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )


    where = s.shown_endpoint()
    url = f"{where}/{repo_id}"
    # subclasses before their bases: GatedRepo < RepositoryNotFound < HfHubHTTPError;
    # LocalEntryNotFound < EntryNotFound
    if isinstance(e, LocalEntryNotFoundError):
        if s.offline:
            return DownloadError(
                f"{repo_id}: {filename} is not in the HF cache ({s.shown_cache()}) and "
                "HF_HUB_OFFLINE is set; run once without HF_HUB_OFFLINE to download it",
                url=url, reason="offline, not cached")
        cause = e.__cause__ or e.__context__
        reason = _first_line(cause) if cause is not None else _first_line(e)
        return DownloadError(
            f"cannot download {filename} of {repo_id} from {where} ({reason}) and it is not in "
            f"the HF cache ({s.shown_cache()}); check the connection, or set HF_ENDPOINT to a "
            "mirror", url=url, reason=reason)
    if isinstance(e, GatedRepoError):
        return InputError(f"{repo_id} is a gated repo on {where}: accept its conditions at {url} "
                          "and set HF_TOKEN to a token of that account")
    if isinstance(e, RepositoryNotFoundError):
        return RepoNotFoundError(repo_id, where)
    if isinstance(e, RevisionNotFoundError):
        return InputError(f"{repo_id} on {where} has no revision {revision!r}")
    if isinstance(e, EntryNotFoundError):
        return InputError(
            f"{repo_id} on {where} has no {filename}: not an OFA checkpoint in the "
            f"HF-transformers layout ({', '.join(REPO_FILES)} and {' or '.join(WEIGHT_FILES)})")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            return InputError(f"{where} refused the token for {repo_id} (HTTP 401): set HF_TOKEN "
                              "to a valid token, or unset it for a public repo")
        return DownloadError(f"cannot download {filename} of {repo_id} from {where}: "
                             f"{_first_line(e)}", url=url, reason=_first_line(e))
    return DownloadError(f"cannot download {filename} of {repo_id} from {where}: "
                         f"{type(e).__name__}: {_first_line(e)}", url=url, reason=_first_line(e))


def download_repo(repo_id: str, revision: str = "main", *, progress: bool = True
                  ) -> HubSnapshot:
    """Download (or find in the cache) the files of the OFA checkpoint ``repo_id``.

    The commit that ``revision`` names when ``config.json`` is fetched pins the other files, so
    they all come from one commit even if the repo changes meanwhile.
    """
    if not is_repo_id(repo_id):
        raise InputError(f"{repo_id!r} is not a HuggingFace hub model id (owner/name)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError("downloading from the HF hub needs huggingface_hub: pip install "
                         "'huggingface_hub>=0.23'") from None
    s = _settings()

    def get(filename: str, rev: str, *, optional: bool = False) -> Path | None:
        """The cached file; None for an optional file the repo (offline: the cache) lacks."""
        try:
            return Path(hf_hub_download(repo_id, filename, revision=rev, cache_dir=s.cache_dir,
                                        endpoint=s.endpoint, local_files_only=s.offline))
        # the boundary to a third-party library: its HTTP errors are OSErrors, but a proxy or
        # connection failure mid-transfer surfaces as its HTTP client's own exception
        except Exception as e:
            if optional and _is_missing(e, s):
                return None
            raise _error(e, repo_id, filename, rev, s) from None

    with _progress_bars(progress):
        config = get(REPO_FILES[0], revision)
        assert config is not None
        # the cache keeps files under snapshots/<commit>/: pin the rest to that commit
        commit = config.parent.name if _COMMIT.match(config.parent.name) else revision
        for filename in REPO_FILES[1:]:
            get(filename, commit)
        weights = next((p for f in WEIGHT_FILES if (p := get(f, commit, optional=True))), None)
    if weights is None and s.offline:

        raise DownloadError(f"{repo_id}: neither {' nor '.join(WEIGHT_FILES)} is in the HF cache "
                            f"({s.shown_cache()}) and HF_HUB_OFFLINE is set; run once without "
                            "HF_HUB_OFFLINE to download it", reason="offline, not cached")
    if weights is None:
        raise InputError(f"{repo_id} on {s.shown_endpoint()} has neither "
                         f"{' nor '.join(WEIGHT_FILES)}: not an OFA checkpoint in the "
                         "HF-transformers layout")
    return HubSnapshot(repo_id=repo_id, commit=commit, folder=weights.parent)


def _is_missing(e: Exception, s: _Settings) -> bool:
    """Whether ``e`` says the file is not in the repo (offline: not in the cache)."""
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    if isinstance(e, LocalEntryNotFoundError):
        return s.offline
    return isinstance(e, EntryNotFoundError)
