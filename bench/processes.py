"""Child processes of a benchmark run: the emulator and the bot, with their resource figures."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


@dataclass
class Child:
    """A child process whose output (stdout and stderr) is collected line by line."""

    name: str
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(
        cls,
        name: str,
        *args: str,
        env: dict[str, str],
        cwd: Path,
        module: Sequence[str] = ("bot",),
    ) -> Child:
        """Start `python -m MODULE ARGS`: `bot`, or a bench module wrapping it with its own
        arguments (`bench.profiled PROFILE`, `bench.oracle FINISH_LOG`)."""
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *module,
            *args,
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        child = cls(name, proc, started=started)
        child._reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def wait_for_line(self, pattern: str, timeout: float) -> tuple[re.Match[str], float]:
        """The first output line matching `pattern`, and when it arrived (monotonic)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if match := regex.search(line):
                    return match, time.monotonic()
            seen = len(self.lines)
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        tail = "\n".join(self.lines[-20:])
        raise RuntimeError(f"{self.name}: no line matching {pattern!r}; last lines:\n{tail}")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send a signal and wait for the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code
