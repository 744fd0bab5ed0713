"""The data path: forward a request to one backend and relay its response to the client."""
