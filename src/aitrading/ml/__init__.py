"""ML service (port 8013): training, walk-forward evaluation, model registry, inference."""
