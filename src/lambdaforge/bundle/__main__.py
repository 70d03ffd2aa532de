"""`python -m lambdaforge.bundle slim|lock`: the two build steps the Dockerfiles and the Makefile run."""

from __future__ import annotations

import sys
from pathlib import Path

from lambdaforge.bundle.build import SlimSpec, filter_lock, slim


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "slim":
        removed = slim(Path(args[1]), SlimSpec.read(Path(args[2])))
        print(f"slimmed {args[1]}: removed {removed / 1e6:.1f} MB")
        return 0
    if len(args) == 3 and args[0] == "lock":
        dropped = filter_lock(Path(args[1]), SlimSpec.read(Path(args[2])))
        print(f"{args[1]}: dropped {', '.join(dropped) or 'nothing'}")
        return 0
    print("usage: python -m lambdaforge.bundle slim TARGET SLIM_TXT | lock REQUIREMENTS SLIM_TXT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
