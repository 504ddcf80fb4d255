"""Data: sources (fetch + hash), readers (formats), store (user sequences), stream (tasks)."""
