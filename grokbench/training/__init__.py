"""Training: building a run's components, the loop, batched programs of seeds, their state and summaries."""
