"""mqd: a command-line operations toolkit for retail algorithmic trading on Alpaca."""

__version__ = "0.1.0"
