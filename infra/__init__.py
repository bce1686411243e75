"""CDK infrastructure of Seller Insights (see docs/internal-contracts.md)."""

from pathlib import Path

# Asset paths (functions/, layers/, build/) and cdk.json are resolved from here, so synthesis
# does not depend on the current working directory.
REPO_ROOT = Path(__file__).resolve().parent.parent
