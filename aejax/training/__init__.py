"""Training: state pytree, the pure train step, compiled epochs, and the loop that drives them."""
