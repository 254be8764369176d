"""Stopping the child processes a lab runs (controllers, etcd members): gently, then surely."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

__all__ = ["kill", "stop"]


def stop(procs: subprocess.Popen[bytes] | Iterable[subprocess.Popen[bytes]],
         timeout_s: float = 10.0) -> None:
    """SIGTERM every process still running, then wait for each; one that has not exited
    within ``timeout_s`` is SIGKILLed (a controller that ignores SIGTERM must not keep its
    ports bound for the next one)."""
    group = [procs] if isinstance(procs, subprocess.Popen) else list(procs)
    for p in group:
        if p.poll() is None:
            p.terminate()
    for p in group:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill(p)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (no goodbye to anyone), and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
