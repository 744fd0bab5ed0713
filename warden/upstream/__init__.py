"""The HTTP client side: pooled keep-alive connections to backends, and request writing."""
