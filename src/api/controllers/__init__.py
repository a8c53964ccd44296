"""Route handlers: reports, jobs (generate, status, cancel, result), users (job limits) and operations (health,
metrics)."""
