"""Whole experiments built from training runs: the demo, the papers' tables (`reproduce`), the
decoder-layer search and the resumable grids of runs they share."""
