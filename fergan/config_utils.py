"""A run's config is resolved once (`fergan.main`) and then frozen: nothing changes it while the
run goes on. Code that needs a variation (one fold, one replica's seed) edits a copy."""

import ml_collections


def editable_copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A mutable deep copy of a (possibly frozen) config, references resolved."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config.as_configdict()
    return config.copy_and_resolve_references()


def frozen(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """An immutable copy: setting any key raises."""
    return ml_collections.FrozenConfigDict(config)


def check_at_least(config: ml_collections.ConfigDict, section: str, keys, minimum) -> None:
    """ValueError naming `<section>.<key>=<value>` for the first of `keys` below `minimum`."""
    for key in keys:
        value = config[section][key]
        if float(value) < minimum:
            raise ValueError(f"{section}.{key}={value} must be >= {minimum}")
