"""Few-shot identification by embedding: metric learning, prototypes, open set, clusters."""
