"""The core: report configurations, job execution logs, their rules, and the repository ports."""
