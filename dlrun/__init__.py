"""dlrun: a YAML-driven experiment runner for evaluating and improving deep networks."""

__version__ = "0.1.0"
