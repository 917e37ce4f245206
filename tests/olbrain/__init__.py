"""Tests of the Olbrain backend: the simulator (raw HTTP) and the client."""
