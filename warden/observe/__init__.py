"""Prometheus collectors (all defined in one place) and logging setup."""
