"""Operator commands for data-subject requests: `python -m ops --help`."""
