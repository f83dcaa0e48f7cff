"""``python -m bench.writer_child VARIANT``: the history writer's child process
(``dashboard.bridge.writer_process``) with a bench variant's writer half applied
(``bench.experiments.WRITER_PATCHES``); the ``no-rollups`` variant's bridge starts it.

The product's child is a fresh interpreter, so a patch made in the bridge's process does not
reach it; this module patches itself, then runs the product's child loop unchanged.
"""

from __future__ import annotations

import sys


def main() -> None:
    from bench import experiments
    from dashboard.bridge import writer_process

    # Before Django is set up (writer_process.main does that): nothing here may print, as
    # the child's stdout carries its answers to the bridge.
    for part in sys.argv[1].split("+"):
        experiments.WRITER_PATCHES.get(part, lambda: None)()
    writer_process.main()


if __name__ == "__main__":
    main()
