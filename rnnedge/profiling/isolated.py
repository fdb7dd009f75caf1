"""`profile_model` in a fresh Python process, for callers that hold large libraries.

A measurement's `peak_rss_mb` is the whole process's peak. In a process that has loaded
torch (the demo, which trains its models first) that is about 500 MB where `rnnedge
profile` of the same model records about 70 MB. Measuring in a child that imports only
rnnedge's profiling code makes the two comparable. The child costs one interpreter start
and the imports, about 0.3 s per call on a 2-core x86-64 host.

The parent and the child exchange pickles over the child's stdin and stdout. Both sides
are this rnnedge, so nothing untrusted is unpickled.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from rnnedge.errors import RnnedgeError
from rnnedge.profiling.profile import ProfileResult


def profile_in_child(model: str | Path, **options: Any) -> ProfileResult:
    """Run `rnnedge.profiling.profile.profile_model(model, **options)` in a new process.

    An error that `profile_model` raises in the child is raised here as it was. The
    child logs at the level of this process's `rnnedge` logger, and its stderr is copied
    to this process's stderr when it ends. A Ctrl-C reaches both processes, and
    `subprocess.run` kills the child if it outlives the parent's KeyboardInterrupt.

    Raises:
        RnnedgeError: the child failed without an rnnedge error (it crashed or was killed).
    """
    level = logging.getLogger("rnnedge").getEffectiveLevel()
    request = pickle.dumps((str(model), options, level))
    completed = subprocess.run(
        [sys.executable, "-m", __name__], input=request, capture_output=True, check=False
    )
    sys.stderr.write(completed.stderr.decode(errors="replace"))
    if completed.returncode == 0:
        outcome = pickle.loads(completed.stdout)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    stderr = completed.stderr.decode(errors="replace").strip().splitlines()
    last = stderr[-1] if stderr else "no output"
    raise RnnedgeError(
        f"profiling {model} in a child process failed with exit code {completed.returncode}: "
        f"{last}; rerun with -v, or profile it alone with rnnedge profile {model}"
    )


def _serve() -> None:
    """Read one request from stdin, profile, and write the result or the error to stdout."""
    from rnnedge.profiling.profile import profile_model

    model, options, level = pickle.loads(sys.stdin.buffer.read())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    package = logging.getLogger("rnnedge")
    package.addHandler(handler)
    package.setLevel(level)
    try:
        outcome: Any = profile_model(model, **options)
    except RnnedgeError as exc:
        outcome = exc
    sys.stdout.buffer.write(pickle.dumps(outcome))


if __name__ == "__main__":
    _serve()
