"""crispops benchmarks: run on demand, never as timed tests.

Each benchmark is a module with a ``main(argv) -> int`` function, registered in
``bench.__main__.COMMANDS`` and run as ``.venv/bin/python -m bench <name> [options]``
(``python -m bench`` alone lists them).
"""
