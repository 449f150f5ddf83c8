"""Analysis of trained autoencoders: evaluation metrics on reconstructions and latent codes."""
