"""Task heads: modules that read the output of an encoder and score one task. Each task
(`vlmt.tasks`) builds and owns its head; a new head is a new module here (or anywhere else) and
needs no change to the models."""
