"""Models: shared layers (dense co-attention, summaries), encoders, heads, and the two paper
models (hierarchical.py, svlr.py)."""
