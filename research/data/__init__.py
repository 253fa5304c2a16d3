"""Data generated in code, deterministic by seed: Double Moving Digits and CATER-like scenes, with ground truth."""
