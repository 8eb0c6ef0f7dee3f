"""One place that says where dexgrasp keeps what it builds once and reuses (random-weight demo models,
the firmware emulator build, benchmark exports).

`DEXGRASP_CACHE_DIR` moves all of it (CI and tests point it at scratch space); otherwise it lives in
`$XDG_CACHE_HOME/dexgrasp`, i.e. `~/.cache/dexgrasp`. Everything under it can be deleted at any time:
it is remade on next use.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DEXGRASP_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """`<cache root>/<parts...>` (not created: callers create what they fill)."""
    root = os.environ.get(ENV_VAR)
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dexgrasp")
    return Path(root).joinpath(*parts)
