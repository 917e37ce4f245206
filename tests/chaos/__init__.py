"""Chaos suite: seeded random turns and faults, checked against the simulator's own log."""
