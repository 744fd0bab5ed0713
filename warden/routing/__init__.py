"""Choosing a backend: the filter step (filters), then a policy (protocol: its contract;
policy, scoring: the presets) over the candidates. Pure: no I/O."""
