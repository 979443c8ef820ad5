"""Reports: the run folder's files, and the sweep-level comparison."""
