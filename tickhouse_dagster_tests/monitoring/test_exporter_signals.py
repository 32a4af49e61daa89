"""`tickhouse metrics` stops on SIGTERM and SIGINT even when started by a parent that ignores
them (a process inherits "ignore", and the default action never runs)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tickhouse_dagster.cli.devserver import free_port

TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))


def ignore_stop_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_exporter_obeys_stop_signal_it_inherited_as_ignored(stop_signal: signal.Signals) -> None:
    port = free_port()
    process = subprocess.Popen(
        [TICKHOUSE_CLI, "metrics", f"--port={port}"],
        preexec_fn=ignore_stop_signals,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                # Serving means the command's own setup, handlers included, is done.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the exporter never listened"
                time.sleep(0.2)
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
