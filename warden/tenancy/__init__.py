"""Who a request comes from and what it may take: API keys and their tenants (keys.py, kept
current from PostgreSQL by key_store.py), and limits per subject (a key, a tenant) that hold
across replicas: requests and tokens a minute, requests in flight (limiter.py for the API,
docs/limits.md for the guarantees)."""
