"""Choosing a backend: pure policies over the candidates (no I/O)."""
