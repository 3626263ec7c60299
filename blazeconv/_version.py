"""blazeconv's version, at the ground floor so any module can record it without importing the package's API."""

__version__ = "0.1.0"
