"""Loopback plumbing, one definition each: a free port to start a server on, and waiting until a URL answers
(failing early when the process that should serve it has died). Used by the engine manager, the benchmarks and
the tests."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None, every: float = 0.25
) -> None:
    """Until GET `url` answers 200; RuntimeError naming the URL after `timeout` seconds, or at once when `proc`
    (the server's process) has exited."""
    deadline = time.time() + timeout
    with httpx.Client(trust_env=False) as client:
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process serving {url} exited with {proc.returncode}")
            try:
                if client.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(every)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
