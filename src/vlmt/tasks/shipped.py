"""Every task type and data family vlmt ships (and the aliases of the former family sections),
imported so that experiment files can name them (`register_task`, `register_family` and the
aliases run when a module is imported). A task or family of your own registers from its package
instead (the entry-point group `vlmt.plugins`)."""

from vlmt.tasks import (  # noqa: F401
    composed,
    composed_data,
    grounding,
    retrieval,
    sanity,
    svlr_data,
    svlr_recognition,
    svlr_vqa_mc,
    svlr_zero_shot,
    vl_data,
    vqa,
)
