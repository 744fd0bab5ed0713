"""The HTTP/1.1 server side: connection protocol, requests, responses, gateway routes."""
