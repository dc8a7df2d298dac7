"""``python -m bench day|ramp ...`` (bench/day.py); the other benches stay ``python -m bench.NAME``."""

from __future__ import annotations

import sys


def main() -> int:
    from bench import day

    return day.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
