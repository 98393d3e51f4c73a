"""calico-lab: a whole Calico-py cluster on one machine, in network namespaces, with the real services."""
