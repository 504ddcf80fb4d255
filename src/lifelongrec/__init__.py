"""lifelongrec: continual user-representation learning for recommender systems."""

__version__ = "0.1.0"
