"""Developer tools that run against the installed dlrun."""
