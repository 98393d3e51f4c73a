"""Calico's CNI plugins: ``calico`` (the network plugin) and ``calico-ipam`` (its IPAM plugin).

Request handling is pure (:mod:`.request`, :mod:`.netconf`, :mod:`.workload`,
:mod:`.result`): environment and stdin in, a validated request out, result and
error JSON back. The drivers (:mod:`.calico`, :mod:`.ipam`) do the I/O: the
datastore, the network namespaces and the Felix status files.
"""
