"""What a Spark session started by Feast needs from this process.

Feast's Spark offline store and Spark materialization engine run Python code on Spark's
Python workers (``mapInPandas`` writes to the online store from there). Spark starts
those workers with ``python3`` from PATH unless told otherwise, which on most machines
is not the interpreter that has Feast installed: the job then fails with "No module
named 'feast'". crispops points them at its own interpreter unless the user chose one.
"""

from __future__ import annotations

import os
import sys


def use_this_python() -> None:
    """Spark's Python workers run this interpreter (unless PYSPARK_PYTHON is set)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
