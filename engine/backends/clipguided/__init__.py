"""generate = "clipguided": CLIP-guided optimisation of the meme's own pixels, one prompt per panel or beat."""
