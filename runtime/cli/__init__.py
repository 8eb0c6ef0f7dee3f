"""The `dexgrasp` command line. Each subcommand lives in its own module with `register(subparsers)`.

Subcommand modules import only the standard library at module level, so `dexgrasp --help` and the
onboard commands never import torch; heavy imports happen inside the command's function.
"""
