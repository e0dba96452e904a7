"""CLI subcommands, one module each (see :mod:`dgflow.cli`)."""
