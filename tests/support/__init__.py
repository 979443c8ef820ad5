"""Helpers that tests hand to dlrun's own processes (importable with PYTHONPATH=<repo>)."""
