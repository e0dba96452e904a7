#!/usr/bin/env python
"""Upload zoo checkpoints to a Hugging Face Hub model repo and print the yaml to register them.

    python scripts/publish_zoo.py OWNER/REPO [NAME ...] [--dry-run] [--private] [--zoo FILE]

Every weights file of the named models (default: all whose files are on disk) is verified against
its registered sha256 and uploaded in one commit; the entries are then printed with repo_id,
filename, the commit hash as pinned revision and sha256, to paste into the top-level model_zoo.yaml.
Needs a write token (`hf auth login` or HF_TOKEN). --dry-run checks and prints without any network.
"""
from __future__ import annotations

import argparse
import sys

from dgflow.zoo import ZooError
from dgflow.zoo.publish import publish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo_id", help="Hub model repo, OWNER/NAME (created if absent)")
    p.add_argument("names", nargs="*", metavar="NAME", help="zoo models to publish (default: all local)")
    p.add_argument("--zoo", action="append", metavar="FILE", help="extra zoo yaml file(s)")
    p.add_argument("--dry-run", action="store_true", help="verify and print, upload nothing")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--message", default="Upload dgflow zoo checkpoints", help="commit message")
    args = p.parse_args(argv)
    try:
        publish(args.repo_id, args.names or None, zoo=args.zoo, dry_run=args.dry_run,
                private=args.private, commit_message=args.message)
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
