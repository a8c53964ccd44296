"""End-to-end fault injection: real `reportgen serve` / `reportgen worker` processes, a TCP proxy in front of
PostgreSQL that can be cut, and a private Redis that can be stopped, restarted and flushed."""
