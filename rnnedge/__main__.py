"""The `rnnedge` console script and `python -m rnnedge`.

The entry point imports the command line itself, so that Ctrl-C during those imports
ends with one line, not a traceback.
"""

from __future__ import annotations

import sys


def entry() -> int:
    """Import and run the command line; return its exit code."""
    try:
        from rnnedge.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(entry())
