"""Anchored patterns must reject a trailing newline (Python's ``$`` matches before one)."""

import pytest

from libcalico.errors import ValidationError
from libcalico.resources import parse_resource


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"kind": "GlobalNetworkPolicy", "metadata": {"name": "deny\n"}}, "metadata.name"),
        ({"kind": "NetworkPolicy", "metadata": {"name": "p", "labels": {"app\n": "x"}}}, "metadata.labels"),
        ({"kind": "WorkloadEndpoint", "metadata": {"name": "n1-k8s-p-eth0", "namespace": "default"},
          "spec": {"node": "n1", "interfaceName": "cali0123456789a\n"}}, "spec.interfaceName"),
    ],
)
def test_trailing_newline_is_rejected(doc: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_resource({"apiVersion": "projectcalico.org/v3", **doc})
    assert info.value.field.startswith(field), str(info.value)
