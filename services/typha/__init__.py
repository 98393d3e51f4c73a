"""Typha: one datastore watch per syncer type, fanned out to every node\x27s agents."""
