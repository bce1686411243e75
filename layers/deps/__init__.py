"""Build of the third-party Lambda layer (see ``python -m layers.deps.build``)."""
