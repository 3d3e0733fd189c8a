"""``python -m bench <name> [options]``: run one benchmark.

A benchmark is a module with ``main(argv: list[str]) -> int``; adding one is one line
in ``COMMANDS``. Modules are imported only when chosen, so listing them is instant.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, str] = {
    "serving": "bench.serving",  # issue 4: /predict and /predict_entity under load
    "pipeline": "bench.pipeline",  # issue 3: the pipeline against one plain script
    "reliability": "bench.reliability",  # issue 7: bad data, promotion, faults, load
    "scale": "bench.scale",  # issue 15: DuckDB vs Spark at 100k, 1M, 10M label rows
    "startup": "bench.startup",  # issue 12: each pipeline task's start-up, by phase
}


def usage() -> str:
    names = "\n".join(f"  {name}" for name in COMMANDS)
    return f"usage: python -m bench <benchmark> [options]  (--help after a name)\n\n{names}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"unknown benchmark {name!r}\n\n{usage()}")
        return 2
    module = importlib.import_module(COMMANDS[name])
    return int(module.main(rest))


if __name__ == "__main__":
    raise SystemExit(main())
