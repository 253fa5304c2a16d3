"""Where and how models run: device and dtype, model files on disk, tiny models built in code."""
