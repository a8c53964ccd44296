"""Adapters: SQL persistence, queues, artifact store, encoders, observability."""
