"""Make the checkout's `benchmarks` package importable however pytest is launched (the suite is
not part of the installed package)."""

import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
