"""generate = "procedural": subject-aware meme motions on a CPU, no weights."""
