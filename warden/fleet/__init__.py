"""The fleet: backends, their registry, and what the gateway learns about them."""
