"""vlmt: multi-task vision-language representation learning.

Implements the hierarchical Dense Co-attention multi-task model (Nguyen & Okatani, CVPR 2019)
and SVLR aligned word-region representations (Gupta et al., ICCV 2017) on shared data readers,
tasks, a trainer and official metrics.
"""

__version__ = "0.1.0"
