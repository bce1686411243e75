"""The export worker: builds a seller's portability ZIP from the `data_exports` queue."""
