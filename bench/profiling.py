"""Sampling profiles of the process under test with py-spy, and a readable summary of them.

``python -m bench.run --profile`` records the bridge during the ingest phase and the server
during the freshness run (``bench/results/profile-*.txt``: collapsed stacks, then the
summary). ``python -m bench.profiling FILE`` summarises a collapsed-stack file again.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^():]+):\d+\)$")  # "func (path/file.py:123)" -> drop the line


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profile:
    """``py-spy record`` of one process for ``seconds``; ``await stop()`` for the summary."""

    def __init__(self, pid: int, output: Path, seconds: float, rate: int = 200) -> None:
        self.pid, self.output, self.seconds, self.rate = pid, output, seconds, rate
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Profile:
        binary = py_spy()
        if binary is None:
            raise FileNotFoundError("py-spy not installed (pip install py-spy)")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(self.pid),
            "--format",
            "raw",
            "--rate",
            str(self.rate),
            "--nonblocking",
            "--duration",
            str(max(1, round(self.seconds))),
            "--output",
            str(self.output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return self

    async def stop(self) -> str:
        if self._proc is not None:
            await asyncio.wait_for(self._proc.wait(), self.seconds + 60)
        if not self.output.exists():
            return "(no profile recorded: py-spy needs ptrace permission)"
        text = summarize(self.output.read_text(encoding="utf-8"))
        with self.output.open("a", encoding="utf-8") as out:
            out.write("\n# Summary\n" + text)
        return text


def _frame(frame: str) -> str:
    return _LINE.sub(lambda m: f" ({Path(m.group(1)).name})", frame.strip())


def summarize(collapsed: str, top: int = 25) -> str:
    """Self and inclusive share of samples per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or line.startswith("#"):
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples\n", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]).read_text(encoding="utf-8")))
