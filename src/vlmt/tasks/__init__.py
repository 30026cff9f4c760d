"""Tasks: one per task (retrieval, VQA, grounding, recognition, multiple-choice VQA); each owns
its collate, head, loss and metrics, and maps a batch to a dict with "loss"."""
