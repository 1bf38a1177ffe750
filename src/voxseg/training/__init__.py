"""The training engine, its events, and the sinks that record a run."""
