"""Zoo files: reading, merging and validating the yaml registries of pretrained models.

The registry is the project's ``model_zoo.yaml`` (:data:`PACKAGED_ZOO`), then every file listed in
the ``DGFLOW_ZOO`` environment variable (``os.pathsep``-separated), then the ``zoo`` argument (a
path, an already-parsed mapping, or a list of them). A name defined again in a later source
replaces the earlier definition. The entry format is documented at the top of ``model_zoo.yaml``
and in ``docs/zoo.md``.

``model_zoo.yaml`` lives at the top of the repository, the one source of truth. A checkout or an
editable install (``pip install -e .``) reads it there: the directory holding the ``dgflow``
package also holds ``pyproject.toml`` and ``model_zoo.yaml``. Building a wheel (``pip install
.``) copies it into the package as ``dgflow/model_zoo.yaml`` (``setup.py``'s build step), which
an installed package reads. Relative weights paths in a zoo file resolve against the file's
directory, except in a zoo file inside the installed package, whose paths resolve against the
directory holding the package, as in a checkout: ``dgflow/weights/...`` works in both.
"""
from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from ..critics import CONVENTIONS
from .errors import UnknownModelError, ZooEntryError, ZooError

PACKAGE_DIR = Path(__file__).resolve().parent.parent     # the installed or checked-out dgflow/
ZOO_FILENAME = "model_zoo.yaml"


def project_zoo_path(package_dir: Path = PACKAGE_DIR) -> Path:
    """The project's zoo file: ``<checkout>/model_zoo.yaml`` when ``package_dir``'s parent is a
    source checkout (it has ``pyproject.toml`` and ``model_zoo.yaml``), else the copy a wheel
    build put inside the package, ``<package_dir>/model_zoo.yaml``."""
    top = package_dir.parent / ZOO_FILENAME
    if top.is_file() and (package_dir.parent / "pyproject.toml").is_file():
        return top
    return package_dir / ZOO_FILENAME


def zoo_base_dir(path: Path) -> Path:
    """Where the relative weights paths of zoo file ``path`` resolve: its directory, or for a zoo
    file inside the dgflow package (a wheel's copy of model_zoo.yaml) the package's parent."""
    return path.parent.parent if path.parent == PACKAGE_DIR else path.parent


PACKAGED_ZOO = project_zoo_path()
ENV_VAR = "DGFLOW_ZOO"
FORMAT_VERSION = 1
NETS = ("generator", "critic")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

ZooSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]
ZooLike = Union[ZooSource, Sequence[ZooSource], None]

_ENTRY_KEYS = {"dataset": True, "z_dim": True, "generator": True, "critic": True, "weights": True,
               "refine": False, "description": False, "license": False, "citation": False,
               "notes": False, "metrics": False}
_NET_KEYS = {"generator": {"arch": True, "kwargs": False},
             "critic": {"arch": True, "kwargs": False, "convention": True, "temperature": False}}
_WEIGHTS_KEYS = {"sha256": True, "path": False, "repo_id": False, "filename": False,
                 "revision": False, "repo_type": False, "modules": False}


@dataclass
class Registry:
    """Merged zoo: ``entries[name]`` is the raw entry dict, ``sources[name]`` the yaml file it came
    from (``None`` for an in-memory mapping), against whose directory relative paths resolve."""

    entries: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, Path | None] = field(default_factory=dict)

    def get(self, name: str) -> dict:
        if name not in self.entries:
            known = ", ".join(sorted(self.entries)) or "(none)"
            raise UnknownModelError(f"unknown model {name!r}; known models: {known}. "
                                    f"Register your own in a yaml file passed as zoo=/--zoo or via "
                                    f"{ENV_VAR} (see docs/zoo.md)")
        return self.entries[name]

    def base_dir(self, name: str) -> Path:
        """Directory that relative weight paths of ``name`` are resolved against (:func:`zoo_base_dir`)."""
        src = self.sources.get(name)
        return zoo_base_dir(src) if src is not None else Path.cwd()


def _as_sources(zoo: ZooLike) -> list[ZooSource]:
    if zoo is None:
        return []
    if isinstance(zoo, (str, os.PathLike, Mapping)):
        return [zoo]
    return list(zoo)


def zoo_sources(zoo: ZooLike = None) -> list[ZooSource]:
    """The packaged zoo, the ``DGFLOW_ZOO`` files, then ``zoo``, in that (override) order."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    return [PACKAGED_ZOO, *env, *_as_sources(zoo)]


def _where(source: Path | None) -> str:
    return str(source) if source is not None else "<zoo mapping>"


def read_zoo_file(source: ZooSource) -> tuple[dict[str, dict], Path | None]:
    """Parse one zoo (a yaml path or a mapping); returns its validated ``models`` and its path."""
    path: Path | None = None
    if isinstance(source, Mapping):
        doc: Any = source
    else:
        path = Path(os.path.expandvars(os.path.expanduser(os.fspath(source)))).resolve()
        if not path.is_file():
            raise ZooError(f"zoo file not found: {path} (given by the zoo argument, --zoo or {ENV_VAR})")
        with open(path, encoding="utf-8") as fh:
            try:
                doc = yaml.safe_load(fh) or {}
            except yaml.YAMLError as err:
                raise ZooEntryError(f"{path}: not valid yaml: {err}") from err
    if not isinstance(doc, Mapping):
        raise ZooEntryError(f"{_where(path)}: a zoo file is a mapping with a 'models' key")
    version = doc.get("format", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ZooEntryError(f"{_where(path)}: format {version!r} is not supported (expected {FORMAT_VERSION})")
    models = doc.get("models") or {}
    if not isinstance(models, Mapping):
        raise ZooEntryError(f"{_where(path)}: 'models' must map model names to entries")
    for name, entry in models.items():
        validate_entry(str(name), entry, path)
    return {str(k): dict(v) for k, v in models.items()}, path


def load_registry(zoo: ZooLike = None) -> Registry:
    """Read and merge every zoo source (see the module docstring)."""
    reg = Registry()
    for source in zoo_sources(zoo):
        if isinstance(source, Path) and source == PACKAGED_ZOO and not source.is_file():
            continue  # a stripped install without the packaged registry
        models, path = read_zoo_file(source)
        for name, entry in models.items():
            reg.entries[name] = entry
            reg.sources[name] = path
    return reg


def names(zoo: ZooLike = None) -> list[str]:
    """Sorted names of every registered model."""
    return sorted(load_registry(zoo).entries)


def entries(zoo: ZooLike = None) -> dict[str, dict]:
    """``{name: raw entry dict}`` of every registered model."""
    return dict(load_registry(zoo).entries)


# ----------------------------------------------------------------------------------- validation
def _refine_keys() -> set[str]:
    from ..flow import refine

    params = list(inspect.signature(refine).parameters)
    return set(params[3:])  # everything after (generator, critic, z)


def _check_keys(where: str, spec: Any, schema: Mapping[str, bool], prefix: str) -> None:
    if not isinstance(spec, Mapping):
        raise ZooEntryError(f"{where}: {prefix.rstrip('.') or 'entry'} must be a mapping, "
                            f"got {type(spec).__name__}")
    for key, required in schema.items():
        if required and spec.get(key) is None:
            raise ZooEntryError(f"{where}: missing key '{prefix}{key}'")
    unknown = sorted(set(spec) - set(schema))
    if unknown:
        raise ZooEntryError(f"{where}: unknown key '{prefix}{unknown[0]}'; "
                            f"allowed: {', '.join(sorted(schema))}")


def _positive_ints(value: Any) -> bool:
    vals = value if isinstance(value, list) else [value]
    return bool(vals) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vals)


def _validate_net(where: str, net: str, spec: Any) -> None:
    _check_keys(where, spec, _NET_KEYS[net], f"{net}.")
    arch = spec["arch"]
    if not isinstance(arch, str) or arch.count(":") != 1 or not all(arch.split(":")):
        raise ZooEntryError(f"{where}: '{net}.arch' must be an importable 'module:callable' string, "
                            f"got {arch!r}")
    if not isinstance(spec.get("kwargs") or {}, Mapping):
        raise ZooEntryError(f"{where}: '{net}.kwargs' must be a mapping")
    if net == "critic":
        if spec["convention"] not in CONVENTIONS:
            raise ZooEntryError(f"{where}: 'critic.convention' is {spec['convention']!r}; "
                                f"use one of {sorted(CONVENTIONS)}")
        t = spec.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ZooEntryError(f"{where}: 'critic.temperature' must be a number > 0, got {t!r}")


def weight_specs(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The entry's weights as a list of file specs (a single mapping is a one-file list)."""
    w = entry.get("weights")
    return list(w) if isinstance(w, list) else [w]


def _validate_weights(where: str, entry: Mapping[str, Any]) -> None:
    files = weight_specs(entry)
    if not files:
        raise ZooEntryError(f"{where}: 'weights' lists no file")
    covered: list[str] = []
    for i, spec in enumerate(files):
        key = "weights." if len(files) == 1 and not isinstance(entry["weights"], list) else f"weights[{i}]."
        _check_keys(where, spec, _WEIGHTS_KEYS, key)
        sha = spec["sha256"]
        if not isinstance(sha, str) or not SHA256_RE.match(sha.lower()):
            raise ZooEntryError(f"{where}: '{key}sha256' must be 64 hex digits, got {sha!r}")
        if spec.get("path") is None and spec.get("repo_id") is None:
            raise ZooEntryError(f"{where}: missing key '{key}path' (or '{key}repo_id' with "
                                f"'{key}filename' and '{key}revision'): the file has no location")
        if spec.get("repo_id") is not None:
            for k in ("revision",) + (("filename",) if spec.get("path") is None else ()):
                if spec.get(k) is None:
                    raise ZooEntryError(f"{where}: missing key '{key}{k}' (required with '{key}repo_id')")
        for k in ("path", "repo_id", "filename", "revision", "repo_type"):
            if spec.get(k) is not None and not isinstance(spec[k], str):
                raise ZooEntryError(f"{where}: '{key}{k}' must be a string, got {spec[k]!r}")
        mods = spec.get("modules", list(NETS))
        if not isinstance(mods, list) or not set(mods) <= set(NETS) or not mods:
            raise ZooEntryError(f"{where}: '{key}modules' must be a non-empty list drawn from {list(NETS)}")
        covered += mods
    for net in NETS:
        if covered.count(net) != 1:
            raise ZooEntryError(f"{where}: the weights must provide '{net}' exactly once (found "
                                f"{covered.count(net)}); set 'modules' on each file")


def validate_entry(name: str, entry: Any, source: Path | None = None) -> None:
    """Raise :class:`ZooEntryError` naming the entry, the file and the offending key."""
    where = f"{_where(source)}: model {name!r}"
    if not NAME_RE.match(name):
        raise ZooEntryError(f"{where}: a model name uses only letters, digits, '.', '_' and '-'")
    _check_keys(where, entry, _ENTRY_KEYS, "")
    if not _positive_ints(entry["z_dim"]):
        raise ZooEntryError(f"{where}: 'z_dim' must be a positive int or a list of them, "
                            f"got {entry['z_dim']!r}")
    for net in NETS:
        _validate_net(where, net, entry[net])
    refine = entry.get("refine") or {}
    if not isinstance(refine, Mapping):
        raise ZooEntryError(f"{where}: 'refine' must be a mapping of dgflow.refine keyword arguments")
    bad = sorted(set(refine) - _refine_keys())
    if bad:
        raise ZooEntryError(f"{where}: 'refine.{bad[0]}' is not a keyword argument of dgflow.refine")
    _validate_weights(where, entry)

