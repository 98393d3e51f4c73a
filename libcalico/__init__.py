"""libcalico: the library every Calico-py service shares.

Resources and validation (:mod:`libcalico.resources`), the selector language
(:mod:`libcalico.selector`), the datastore interface and its backends
(:mod:`libcalico.datastore`) and the service runtime (:mod:`libcalico.runtime`).
"""

__version__ = "0.1.0"
