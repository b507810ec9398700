"""The package version (a leaf module, so every floor can name it without importing the façade)."""

__version__ = "0.1.0"
