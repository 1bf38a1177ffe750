"""Scoring predictions against ground truths (`voxseg evaluate`): which files pair, the metrics, the
table. Imports nothing of the model or the file job, so it runs without torch."""
