"""Network architectures, one module each, found through the registry.

Importing this package imports every module in it, so a new file with a
`@register_network` function is all it takes to add an architecture.
"""

import importlib
import pkgutil

from trainer.networks.compile import build_model_graph
from trainer.networks.registry import get_network, network_names, register_network

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["build_model_graph", "get_network", "network_names", "register_network"]
