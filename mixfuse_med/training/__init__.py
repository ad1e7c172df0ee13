"""Training MixFuse on registered 2D pairs (data, transforms, engines)."""
