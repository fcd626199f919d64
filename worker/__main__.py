"""``python -m worker --slot K``: one worker process, as ``aigis worker -p N`` starts it."""

from __future__ import annotations

import argparse

from worker.run import run_one


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--slot", type=int, default=0, help="process slot (0-based)")
    parser.add_argument(
        "--supervised", action="store_true", help="stop when the parent process is gone"
    )
    args = parser.parse_args()
    raise SystemExit(run_one(args.slot, supervised=args.supervised))


if __name__ == "__main__":
    main()
