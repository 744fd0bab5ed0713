"""Admission: what a proxied request passes before it is forwarded (admission.chain)."""
