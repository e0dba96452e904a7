"""Publishing zoo checkpoints to a Hugging Face Hub repo (used by ``scripts/publish_zoo.py``).

Uploads every weights file of the chosen entries in ONE commit, then prints the entries again with
``repo_id``, ``filename``, the commit hash as pinned ``revision`` and the ``sha256``, ready to paste
over the old ones in their zoo file (the top-level ``model_zoo.yaml`` for the project's checkpoints). ``dry_run=True`` verifies the files and prints the same lines with a
placeholder revision without constructing any network client.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from .authoring import entry_yaml
from .errors import ZooError
from .loader import weight_files
from .registry import ZooLike, load_registry
from .weights import verify

DRY_RUN_REVISION = "DRY-RUN-commit-hash-printed-after-upload"


@dataclass(frozen=True)
class Upload:
    """One file to upload: which model and weights item it belongs to, from where, to where."""

    model: str
    index: int
    local_path: Path
    path_in_repo: str
    sha256: str


def plan_uploads(names: Iterable[str] | None = None, *, zoo: ZooLike = None) -> list[Upload]:
    """The uploads for ``names`` (default: every model whose files are all on disk), each verified
    against its registered sha256. Raises if a chosen file is missing or two share a repo filename."""
    registry = load_registry(zoo)
    chosen = list(names) if names else [
        n for n in sorted(registry.entries)
        if all(wf.path is not None and wf.path.is_file() for wf in weight_files(registry, n))]
    uploads: list[Upload] = []
    for name in chosen:
        for i, wf in enumerate(weight_files(registry, name)):
            if wf.path is None or not wf.path.is_file():
                raise ZooError(f"model {name!r}: no local weights file to publish (path: {wf.path})")
            verify(wf, wf.path)
            uploads.append(Upload(name, i, wf.path, wf.filename or wf.path.name, wf.sha256))
    seen: dict[str, str] = {}
    for up in uploads:
        if seen.setdefault(up.path_in_repo, up.model) != up.model:
            raise ZooError(f"models {seen[up.path_in_repo]!r} and {up.model!r} would both upload "
                           f"{up.path_in_repo!r}; give one of them a distinct 'filename'")
    return uploads


def published_entries(uploads: list[Upload], repo_id: str, revision: str, *, zoo: ZooLike = None
                      ) -> dict[str, dict]:
    """The chosen entries with their weights pointing at ``repo_id@revision``."""
    registry = load_registry(zoo)
    out: dict[str, dict] = {}
    for up in uploads:
        entry = out.setdefault(up.model, copy.deepcopy(registry.get(up.model)))
        items = entry["weights"] if isinstance(entry["weights"], list) else [entry["weights"]]
        items[up.index].update(repo_id=repo_id, filename=up.path_in_repo, revision=revision,
                               sha256=up.sha256)
    return out


def publish(repo_id: str, names: Iterable[str] | None = None, *, zoo: ZooLike = None,
            dry_run: bool = False, api: Any = None, private: bool = False, token: str | None = None,
            commit_message: str = "Upload dgflow zoo checkpoints", out: TextIO | None = None
            ) -> dict[str, dict]:
    """Upload the chosen models' weights to ``repo_id`` and print their updated yaml entries.

    ``api`` defaults to ``huggingface_hub.HfApi(token=token)`` (never built when ``dry_run``).
    Returns ``{name: updated entry}``.
    """
    out = out or sys.stdout
    uploads = plan_uploads(names, zoo=zoo)
    if not uploads:
        raise ZooError("nothing to publish: no model has its weights files on disk")
    for up in uploads:
        print(f"{'would upload' if dry_run else 'uploading'} {up.local_path} -> "
              f"{repo_id}/{up.path_in_repo} (sha256 {up.sha256})", file=out)
    if dry_run:
        revision = DRY_RUN_REVISION
    else:
        from huggingface_hub import CommitOperationAdd, HfApi

        api = api if api is not None else HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=up.path_in_repo, path_or_fileobj=str(up.local_path))
               for up in uploads]
        info = api.create_commit(repo_id, ops, commit_message=commit_message, repo_type="model")
        revision = info.oid
    entries = published_entries(uploads, repo_id, revision, zoo=zoo)
    sources = load_registry(zoo).sources
    print("\n# replace these entries under 'models:' in their zoo files" +
          (" (dry run: the revision is a placeholder)" if dry_run else f" (commit {revision})"), file=out)
    for name, entry in entries.items():
        print(f"# in {sources.get(name) or 'your zoo mapping'}:", file=out)
        print(entry_yaml(name, entry), end="", file=out)
    return entries
