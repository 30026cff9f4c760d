"""Data: readers for the official dataset formats, region feature store, text pipeline,
and the synthetic world (written in those same formats)."""
