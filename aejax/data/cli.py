"""``aejax-data``: prepare the MNIST-family datasets ahead of time, and see what is prepared.

    aejax-data prepare fashion_mnist [--data-dir D] [--source-dir S] [--base-url U] [--no-download]
    aejax-data list [--data-dir D]

``prepare`` shows TFDS's progress bars (on stderr) while it writes the examples, then prints
where the cache is, how many examples each split has and how long it took. Errors print
``aejax-data: <message>`` on stderr and exit with status 1 (2 for bad usage).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from aejax.errors import ConfigError, DataError

PROG = "aejax-data"


def _parser() -> argparse.ArgumentParser:
    from aejax.data.mnist_family import FAMILY

    parser = argparse.ArgumentParser(prog=PROG, description="Prepare and inspect the MNIST-family TFDS datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prep = sub.add_parser("prepare", help="build a dataset into the TFDS data dir (a no-op when it is there)",
                          description="Build a dataset into the TFDS data dir; a no-op when it is there already.")
    prep.add_argument("name", choices=FAMILY, metavar="NAME", help=f"one of: {', '.join(FAMILY)}")
    prep.add_argument("--data-dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    prep.add_argument("--source-dir", help="directory holding the four upstream IDX .gz files")
    prep.add_argument("--base-url", help="download from this URL instead of the upstream mirror")
    prep.add_argument("--no-download", action="store_true", help="never use the network")

    lst = sub.add_parser("list", help="list the datasets and whether each is prepared")
    lst.add_argument("--data-dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    return parser


def _prepare(args: argparse.Namespace) -> int:
    from aejax.data import mnist_family as mf

    b = mf.builder(args.name, args.data_dir)
    if b.is_prepared():
        start = time.perf_counter()
        b = mf.prepare(args.name, args.data_dir)
        print(f"{args.name}: already prepared in {b.data_dir} ({time.perf_counter() - start:.2f} s)")
    else:
        start = time.perf_counter()
        b = mf.builder(args.name, args.data_dir, source_dir=args.source_dir, base_url=args.base_url,
                       download=not args.no_download)
        local = b.resolve_source()  # a DataError here already says what to do
        source = f"from {local}" if local is not None else f"downloading from {b.base_url}"
        print(f"{args.name}: preparing into {b.data_dir_root}, {source}", flush=True)
        b = mf.prepare(args.name, args.data_dir, source_dir=args.source_dir, base_url=args.base_url,
                       download=not args.no_download)
        sys.stderr.flush()
        print(f"{args.name}: prepared in {b.data_dir} ({time.perf_counter() - start:.1f} s)")
    for split in mf.SPLITS:
        print(f"  {split}: {b.info.splits[split].num_examples} examples")
    return 0


def _list(args: argparse.Namespace) -> int:
    from aejax.data import mnist_family as mf

    root = None
    for name in mf.FAMILY:
        b = mf.builder(name, args.data_dir)
        if root is None:
            root = b.data_dir_root
            print(f"data dir: {root}")
        if b.is_prepared():
            sizes = ", ".join(f"{b.info.splits[s].num_examples} {s}" for s in mf.SPLITS)
            print(f"  {name:<14} prepared ({sizes})  {b.data_dir}")
        else:
            print(f"  {name:<14} not prepared  (aejax-data prepare {name})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or bad usage (2): argparse has printed why
        return int(e.code or 0)
    try:
        if args.command == "prepare":
            return _prepare(args)
        return _list(args)
    except (DataError, ConfigError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
