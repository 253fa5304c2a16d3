"""Making checkpoints: clips and datasets, the LoRA trainer, one-shot tuning, DDIM inversion and remixes.

Nothing here is imported by the CPU animation path: the CLI's `dataset`, `train` and `tune` commands and the
queue's remix and training jobs import what they need when they run.
"""
