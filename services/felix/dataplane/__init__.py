"""Felix's Linux dataplane: nftables (one ``inet calico`` table), routes, interface sysctls, VXLAN.

Use :class:`Dataplane` with :class:`DataplaneOptions`; feed it the messages of
:mod:`services.felix.messages` with :meth:`Dataplane.send`. See docs/felix-dataplane.md.
"""

from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions, DataplaneStats
from services.felix.dataplane.errors import DataplaneError, NftablesError, RenderError
from services.felix.dataplane.settings import DataplaneSettings, settings_from_config

__all__ = [
    "Dataplane", "DataplaneError", "DataplaneOptions", "DataplaneSettings", "DataplaneStats", "NftablesError",
    "RenderError", "settings_from_config",
]
