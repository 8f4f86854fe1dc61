"""Feature engineering (port 8011): streaming and batch indicators, feature vectors."""
