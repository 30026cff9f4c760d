"""Models: encoders (`hierarchical.py`, `svlr.py`), the layers they are made of (`layers/`) and
the task heads that read them (`heads/`). Models are tensors in, tensors out: they never see
text, files or dataset names."""
