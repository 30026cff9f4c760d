"""Tasks: one module per task type, each holding its config (a registered `TaskConfig`), its head,
its loss, its batches and its metrics. A task maps a batch to {"loss": ..., other scalars} and
evaluates a whole split; the trainer knows nothing else about it (`vlmt.tasks.base.Task`)."""
