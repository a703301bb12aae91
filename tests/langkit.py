"""What the TARS language's tests share: `tars` run as a user runs it, in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tars(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``tars ARGS`` from the repository's root."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr
