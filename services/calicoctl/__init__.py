"""calicoctl: Calico's operator CLI for v3 resources (apply, create, replace, delete, get, patch, label, validate, version).

How it works::

    argv ──► cli.py (docopt-style flags → one Invocation)
               │
               ▼
    commands.py ──► manifest.py  (files, dirs, stdin → validated resources, or nothing)
               │──► connection.py (config file / DATASTORE_TYPE → libcalico Client)
               │──► actions.py   (one resource operation, Calico's semantics and errors)
               ▼
    summary.py (Calico's result lines)  +  output.py / columns.py (yaml, json, ps, wide tables)
"""
