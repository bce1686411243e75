"""Code every Seller Insights function shares (the shared Lambda layer)."""
