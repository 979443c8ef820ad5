"""Hydra's basic sweeper composing each job once (``hydra/sweeper=basic`` under ``dlrun``)."""
