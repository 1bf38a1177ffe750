"""Data: pairing files, integrity checks, normalised cached volumes, patch sampling, augmentation."""
