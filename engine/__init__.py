"""Make It Move engine: turns a meme into a short animation that keeps its caption."""
