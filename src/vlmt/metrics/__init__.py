"""The official metrics, reproducing the official evaluation code exactly: VQA accuracy (open-ended
and multiple choice), retrieval Recall@K, grounding Recall@K, recognition accuracy and rank
correlation with human attention. They take predictions and annotations, never models."""
