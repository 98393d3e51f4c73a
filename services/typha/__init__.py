"""Typha: one datastore watch per syncer type, fanned out to every node's agents."""
