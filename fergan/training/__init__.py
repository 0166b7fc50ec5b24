"""Shared training machinery that knows no method: data-parallel drivers, replicas, CPU
workarounds."""
