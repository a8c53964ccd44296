"""The arq adapter: every import of arq stays inside this package."""
