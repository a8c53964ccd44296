"""The composition root: the one place that wires adapters into use cases, for every process kind."""
