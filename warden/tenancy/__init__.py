"""Limits per subject (an API key, a tenant) that hold across replicas: requests and tokens a
minute, requests in flight. The admission stage asks `admit` and the end of the exchange
calls `settle`; see tenancy/limiter.py for the API and docs/limits.md for the guarantees."""
