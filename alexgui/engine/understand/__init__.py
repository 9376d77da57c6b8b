"""Understanding a model: first-layer kernels and their colour specificity."""
