"""alexgui: see, train and use AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012)."""

__version__ = "0.1.0"
