"""Operator commands for data-subject requests and the fleet: `python -m ops --help`."""

import sys
from pathlib import Path

# The fleet commands share the functions' code (seller_insights.fleet_census, pseudonyms, ...): the shared
# layer joins the path here, the one place, as Lambda adds it for the functions.
_SHARED_LAYER = str(Path(__file__).resolve().parents[1] / "layers" / "shared" / "python")
if _SHARED_LAYER not in sys.path:
    sys.path.append(_SHARED_LAYER)
