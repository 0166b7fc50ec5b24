"""The registry of methods: `config.method` names one (default 'fesr').

A method registers itself by name (`register`); `get` imports the built-in methods on first use,
so the shared code never imports a method module directly.
"""

import importlib

from fergan.methods.base import Method

# Built-in methods: name -> module whose import registers it.
BUILT_IN = {
    "fesr": "fergan.methods.fesr",
    "lssl": "fergan.methods.lssl",
    "ecgan": "fergan.methods.ecgan",
    "geometry": "fergan.methods.geometry",
}

_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make `method` available as `config.method=<method.name>`; returns it."""
    _REGISTRY[method.name] = method
    return method


def names() -> list[str]:
    """Every method that `get` can return."""
    return sorted(set(BUILT_IN) | set(_REGISTRY))


def get(name: str) -> Method:
    """The method called `name`; ValueError lists the allowed names."""
    if name not in _REGISTRY and name in BUILT_IN:
        importlib.import_module(BUILT_IN[name])
    if name not in _REGISTRY:
        raise ValueError(f"method={name!r} is unknown; allowed: {', '.join(names())}")
    return _REGISTRY[name]


def of(config) -> Method:
    """The method a config selects (`config.method`, 'fesr' when the key is absent)."""
    return get(config.get("method", "fesr"))
