"""Calico-py services: each runs on its own and imports only libcalico."""
