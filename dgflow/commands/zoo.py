"""``dgflow zoo list | download | verify``: the pretrained-model registry from the command line."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import zoo as Z


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zoo", action="append", metavar="FILE", default=None,
                        help="extra zoo yaml file(s) with your own models (repeatable; "
                             f"also ${Z.ENV_VAR}, os.pathsep-separated)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="Hugging Face Hub cache (default: HF_HUB_CACHE, else $HF_HOME/hub)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="list, download and verify pretrained models",
                              description="The model zoo: pretrained generator/critic pairs "
                                          "(model_zoo.yaml plus your own yaml files).")
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    ls = sub.add_parser("list", help="table of registered models and where their weights are")
    _common(ls)
    ls.set_defaults(func=cmd_list)

    dl = sub.add_parser("download", help="fetch models' weights into the Hub cache and verify them")
    dl.add_argument("names", nargs="*", metavar="NAME")
    dl.add_argument("--all", action="store_true", help="every registered model")
    _common(dl)
    dl.set_defaults(func=cmd_download)

    vf = sub.add_parser("verify", help="check sha256 and architecture fit of weights on disk "
                                       "(never downloads); exit 1 if any fails")
    vf.add_argument("names", nargs="*", metavar="NAME", help="default: every registered model")
    _common(vf)
    vf.set_defaults(func=cmd_verify)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    try:
        reg = Z.load_registry(args.zoo)
        rows = []
        for name in sorted(reg.entries):
            e = reg.entries[name]
            where = sorted({Z.availability(wf, args.cache_dir) for wf in Z.weight_files(reg, name)})
            refine = " ".join(f"{k}={v}" for k, v in (e.get("refine") or {}).items())
            rows.append([name, e["dataset"], str(e["z_dim"]), e["generator"]["arch"].split(":")[-1],
                         e["critic"]["convention"], refine or "-", ",".join(where)])
    except Z.ZooError as err:
        return _fail(err)
    if not rows:
        print("no models registered")
        return 0
    print(format_table(["NAME", "DATASET", "Z", "GENERATOR", "CRITIC", "REFINE", "WEIGHTS"], rows))
    print("\nWEIGHTS: local = shipped file, cached = in the Hub cache, hub = `dgflow zoo download NAME` "
          "fetches it, missing = nowhere")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    try:
        reg = Z.load_registry(args.zoo)
        names = sorted(reg.entries) if args.all else args.names
        if not names:
            return _fail(ValueError("name at least one model (or --all); see `dgflow zoo list`"))
        for name in names:
            reg.get(name)
        for name in names:
            for wf in Z.weight_files(reg, name):
                path = Z.fetch(wf, cache_dir=args.cache_dir)
                print(f"{name}: {path} (sha256 ok)")
    except Z.ZooError as err:
        return _fail(err)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        reg = Z.load_registry(args.zoo)
        names = args.names or sorted(reg.entries)
        for name in names:
            reg.get(name)
    except Z.ZooError as err:
        return _fail(err)
    rows, bad = [], 0
    for name in names:
        try:
            Z.load(name, zoo=args.zoo, cache_dir=args.cache_dir, local_files_only=True)
            status, detail = "ok", ""
        except Z.WeightsNotAvailableError:
            status, detail = "missing", f"not on disk: `dgflow zoo download {name}`"
        except Z.ChecksumError as err:
            status, detail = "MISMATCH", str(err).split(": expected")[0]
        except Z.ZooError as err:
            status, detail = "ERROR", str(err)
        bad += status != "ok"
        rows.append([name, status, detail])
    print(format_table(["NAME", "STATUS", "DETAIL"], rows))
    return 1 if bad else 0
