"""The client libraries people use, against a live `workbench serve`: `make peers` (python -m bench.peers)."""
