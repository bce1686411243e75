"""`python -m ops COMMAND ...`: the operators' commands (ops/cli.py; `python -m ops --help`)."""

from __future__ import annotations

import sys

from ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
