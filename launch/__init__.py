"""classreg: measure how regularization changes an image classifier, class by class."""

__version__ = "0.1.0"
