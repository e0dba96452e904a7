"""Finding a zoo weights file on disk or on the Hugging Face Hub, and verifying its sha256.

Resolution order for each file: the entry's local ``path`` if it exists, else
``huggingface_hub.hf_hub_download(repo_id, filename, revision=...)``, which reads the Hub cache
(``cache_dir``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``) and downloads only when allowed.
Downloads are disabled by ``local_files_only=True`` or, when that is left as ``None``, by the
``HF_HUB_OFFLINE`` environment variable (read at call time). The sha256 is verified every time,
whatever the file's origin; a mismatch is never loaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..io import sha256_of
from .errors import ChecksumError, WeightsNotAvailableError
from .registry import NETS

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class WeightsFile:
    """One weights file of a zoo entry: where it may be found and what it must hash to."""

    model: str
    sha256: str
    modules: tuple[str, ...]
    path: Path | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    repo_type: str = "model"

    @classmethod
    def from_spec(cls, model: str, spec: Mapping[str, Any], base_dir: Path) -> "WeightsFile":
        path = spec.get("path")
        if path is not None:
            path = Path(os.path.expandvars(os.path.expanduser(path)))
            path = path if path.is_absolute() else (base_dir / path)
        filename = spec.get("filename") or (path.name if path is not None else None)
        return cls(model=model, sha256=str(spec["sha256"]).lower(),
                   modules=tuple(spec.get("modules", NETS)), path=path, repo_id=spec.get("repo_id"),
                   filename=filename, revision=spec.get("revision"),
                   repo_type=spec.get("repo_type") or "model")

    @property
    def on_hub(self) -> bool:
        return self.repo_id is not None

    def hub_label(self) -> str:
        return f"{self.filename} from Hugging Face repo {self.repo_id} at revision {self.revision}"

    def hf_cli_command(self) -> str:
        kind = "" if self.repo_type == "model" else f" --repo-type {self.repo_type}"
        return f"hf download {self.repo_id} {self.filename} --revision {self.revision}{kind}"


def offline_mode(local_files_only: bool | None) -> bool:
    """``local_files_only`` if given, else whether ``HF_HUB_OFFLINE`` is set (now, or when
    huggingface_hub was imported)."""
    if local_files_only is not None:
        return bool(local_files_only)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hub cache in use: ``cache_dir``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    huggingface_hub's default. Environment variables are read at call time."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_hub_file(wf: WeightsFile, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The file's path in the Hub cache, or ``None`` if it is not cached (never touches the network)."""
    if not wf.on_hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(wf.repo_id, wf.filename, cache_dir=str(hub_cache_dir(cache_dir)),
                                   revision=wf.revision, repo_type=wf.repo_type)
    return Path(found) if isinstance(found, str) else None


def availability(wf: WeightsFile, cache_dir: str | os.PathLike | None = None) -> str:
    """``"local"`` (at its path), ``"cached"`` (in the Hub cache), ``"hub"`` (downloadable) or
    ``"missing"``; no network access."""
    if wf.path is not None and wf.path.is_file():
        return "local"
    if cached_hub_file(wf, cache_dir) is not None:
        return "cached"
    return "hub" if wf.on_hub else "missing"


def _not_available(wf: WeightsFile, cache: Path, why: str) -> WeightsNotAvailableError:
    local = f"; or put the file at {wf.path}" if wf.path is not None else ""
    return WeightsNotAvailableError(
        f"model {wf.model!r}: weights file {wf.hub_label()} {why}. The Hub cache searched is {cache}. "
        f"Fetch it on a machine with network access with `dgflow zoo download {wf.model}` "
        f"(or `{wf.hf_cli_command()}`) and copy that cache directory here (point HF_HOME or "
        f"HF_HUB_CACHE at it){local}")


def _download(wf: WeightsFile, cache_dir: str | os.PathLike | None, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    cache = hub_cache_dir(cache_dir)
    try:
        return Path(hf_hub_download(wf.repo_id, wf.filename, revision=wf.revision, repo_type=wf.repo_type,
                                    cache_dir=str(cache), local_files_only=offline,
                                    library_name="dgflow"))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        why = ("is not in the local cache and downloads are disabled (HF_HUB_OFFLINE=1 or "
               "local_files_only=True)" if offline else
               "is not in the local cache and the Hub could not be reached")
        raise _not_available(wf, cache, why) from err
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as err:
        raise WeightsNotAvailableError(
            f"model {wf.model!r}: the Hub refused {wf.hub_label()}: {type(err).__name__}: {err}. "
            "Check repo_id/revision in the zoo entry, or log in (`hf auth login`) for a private repo"
        ) from err
    except EntryNotFoundError as err:
        raise WeightsNotAvailableError(f"model {wf.model!r}: {wf.hub_label()} does not exist on the Hub: "
                                       f"check 'filename' in the zoo entry") from err
    except (HfHubHTTPError, OSError) as err:
        raise _not_available(wf, cache, f"could not be downloaded ({type(err).__name__}: {err})") from err


def verify(wf: WeightsFile, path: Path) -> Path:
    """``path`` if its sha256 is the registered one; else :class:`ChecksumError` naming the file."""
    got = sha256_of(path)
    if got != wf.sha256:
        origin = f" (cached from {wf.repo_id}@{wf.revision})" if wf.path != path and wf.on_hub else ""
        raise ChecksumError(
            f"model {wf.model!r}: sha256 mismatch for weights file {path}{origin}: expected {wf.sha256}, "
            f"got {got}. Refusing to load it: the file is corrupt, truncated or not the registered one. "
            "Delete it and download again, or fix 'sha256' in the zoo entry if you replaced the "
            "checkpoint on purpose")
    return path


def locate(wf: WeightsFile, *, cache_dir: str | os.PathLike | None = None,
           local_files_only: bool | None = None) -> Path:
    """The file on disk (local path, else Hub cache/download), NOT yet verified."""
    if wf.path is not None and wf.path.is_file():
        return wf.path
    if not wf.on_hub:
        raise WeightsNotAvailableError(
            f"model {wf.model!r}: weights file not found at {wf.path} and the zoo entry names no Hugging "
            "Face Hub location (repo_id, filename, revision) to download it from")
    return _download(wf, cache_dir, offline_mode(local_files_only))


def fetch(wf: WeightsFile, *, cache_dir: str | os.PathLike | None = None,
          local_files_only: bool | None = None) -> Path:
    """:func:`locate` then :func:`verify`: a path that is safe to load."""
    return verify(wf, locate(wf, cache_dir=cache_dir, local_files_only=local_files_only))
