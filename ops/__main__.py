"""`python -m ops show|export|delete|undelete|remove-tokens|correct SELLER_ID [--api URL]`."""

from __future__ import annotations

import sys

from ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
