"""Building blocks shared by the models and heads: masking helpers, the dense co-attention layer
as the paper writes it and its fused fast path, summary attention, and the language and region
input encoders."""
