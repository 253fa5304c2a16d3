"""One class per backend, holding its loaded model; the stages name them in their registries."""
