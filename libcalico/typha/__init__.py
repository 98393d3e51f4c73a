"""The Typha sync protocol (version 1): frames, messages and connection state machines.

The I/O-free core lives in :mod:`libcalico.typha.protocol` (framing and message
types) and :mod:`libcalico.typha.connection` (per-connection state machines);
asyncio drivers for the server (``services/typha``) and the client feed them.
"""
