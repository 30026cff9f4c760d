"""Every task type vlmt ships, imported so that experiment files can name them (`register_task`
runs when a module is imported). A task of your own registers from its package instead (the
entry-point group `vlmt.plugins`)."""

from vlmt.tasks import (  # noqa: F401
    composed,
    grounding,
    retrieval,
    sanity,
    svlr_recognition,
    svlr_vqa_mc,
    svlr_zero_shot,
    vqa,
)
