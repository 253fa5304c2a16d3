"""The eight pipeline stages, one module each; a stage with alternatives picks its backend from a registry."""
