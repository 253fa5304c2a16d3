"""generate = "t2v" and "i2v": diffusion video models (diffusers), the one resident model and its LoRA."""
