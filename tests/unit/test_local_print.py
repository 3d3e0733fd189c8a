"""kfp.local's indented_print under tasks that overlap (crispops.orchestration.local)."""

from __future__ import annotations

import builtins
import io
import threading

from kfp.local import logging_utils

from crispops.orchestration.local import _print_indented_per_thread


def _overlap() -> tuple[str, str]:
    """Two tasks' logs, entered A, B and left A, B: the order that leaked a wrapper."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    out = {"a": io.StringIO(), "b": io.StringIO()}

    def task(name: str, wait_in: threading.Event | None, done: threading.Event) -> None:
        with logging_utils.indented_print():
            done.set()
            if wait_in is not None:
                wait_in.wait(5)
            print(name, file=out[name])
            if name == "b":
                a_out.wait(5)  # b leaves after a
        if name == "a":
            a_out.set()

    ta = threading.Thread(target=task, args=("a", b_in, a_in))
    ta.start()
    a_in.wait(5)
    tb = threading.Thread(target=task, args=("b", None, b_in))
    tb.start()
    ta.join(5)
    tb.join(5)
    return out["a"].getvalue(), out["b"].getvalue()


def test_overlapping_tasks_leave_print_as_it_was_and_indent_each_once() -> None:
    before = builtins.print
    for _ in range(20):  # runs in one process: nothing piles up
        with _print_indented_per_thread():
            a, b = _overlap()
        assert (a, b) == ("    a\n", "    b\n")  # one indent each, not one per layer
        assert builtins.print is before
        assert logging_utils.indented_print.__module__ == "kfp.local.logging_utils"
