"""Fixtures live in tests/support/local_stack.py (shared with tests/browser)."""
