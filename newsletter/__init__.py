"""ML Foundations monthly newsletter service."""

__version__ = "0.1.0"
