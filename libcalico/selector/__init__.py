"""Calico's selector language: ``parse(text)`` → :class:`Selector`, errors as :class:`SelectorError`.

    >>> sel = parse("role == 'db' && env in {'prod', 'stage'}")
    >>> sel.evaluate({"role": "db", "env": "prod"})
    True
    >>> str(sel)
    '(role == "db" && env in {"prod", "stage"})'

The label index for "which label sets match which selectors" is in
:mod:`libcalico.selector.labelindex`.
"""

from libcalico.selector.errors import SelectorError
from libcalico.selector.selector import Selector, make_unique_id, parse

__all__ = ["Selector", "SelectorError", "make_unique_id", "parse"]
