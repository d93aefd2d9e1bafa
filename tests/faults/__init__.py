"""Fault tests: a real deployment broken on purpose (docs/operations.md, "Faults and
recovery")."""
