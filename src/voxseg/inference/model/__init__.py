"""The model on arrays: a trained network loaded once (`predictor.Predictor`), the sliding window, and
the instances cut from its outputs. Knows nothing of files being written."""
