#!/usr/bin/env python3
"""CDK entry point: ``cdk synth -c stage=NAME`` (default ``dev``). Makes no AWS calls."""

from infra.app import build_app

if __name__ == "__main__":
    build_app().synth()
