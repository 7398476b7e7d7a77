"""``lmboost serve`` as a child process on a free local port: started, waited for, stopped.

For tests, benchmarks and scripts that talk to a real server over HTTP::

    with ServerProcess("project/", "--api-key-env", "KEY") as server:
        httpx.get(f"{server.url}/v1/tasks")

The server runs ``python -m lmboost.cli serve --config serve.yaml --port PORT *flags`` in
``folder`` (so relative paths in the config are the folder's), its output appended to
``folder/server.log``. Starting waits until ``/health`` answers 200; stopping sends SIGTERM (the
server saves its calibrator state on the way out) and waits for the exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``lmboost serve --config CONFIG`` run in ``folder`` on a free port (see the module
    docstring); ``env`` entries are added to this process's environment. Raises RuntimeError,
    with the end of the server's log, when the server exits or does not answer within
    ``start_timeout`` seconds."""

    def __init__(self, folder: str | Path, *flags: str, config: str = "serve.yaml",
                 env: dict[str, str] | None = None, start_timeout: float = 300) -> None:
        import httpx

        self.folder = Path(folder)
        self.log_path = self.folder / "server.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lmboost.cli", "serve", "--config", config,
             "--port", str(port), *flags],
            cwd=self.folder, env={**os.environ, **(env or {})}, stdout=self._log,
            stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + start_timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited ({self.process.returncode}):\n"
                                       f"{self._log_tail()}")
                try:
                    if httpx.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer /health in {start_timeout:g} "
                                       f"s:\n{self._log_tail()}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM the server (if it still runs) and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        self._log.close()

    def _log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
