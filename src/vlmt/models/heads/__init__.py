"""Task decoders of the hierarchical model (H Sec. 3.3): retrieval (ICR), VQA, grounding (VG).
Each returns logits; the sigmoid of the paper is applied by the losses (BCE with logits) and by
`torch.sigmoid` at prediction time."""

from vlmt.models.heads.grounding import GroundingHead, phrase_pooling_weights
from vlmt.models.heads.retrieval import RetrievalHead
from vlmt.models.heads.shortlist import ShortlistHead
from vlmt.models.heads.vqa import VQAHead

__all__ = ["GroundingHead", "RetrievalHead", "ShortlistHead", "VQAHead", "phrase_pooling_weights"]
