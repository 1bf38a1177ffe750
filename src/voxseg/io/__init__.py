"""Reading and writing volumes: lazily where the format allows, atomically always."""
