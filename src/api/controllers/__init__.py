"""Route handlers: reports, jobs (generate, status, result) and operations (health, metrics)."""
