"""Training: task schedules, the loop, checkpoints, run folders and distributed helpers."""
