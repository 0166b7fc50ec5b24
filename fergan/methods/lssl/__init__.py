"""LSSL: attribute-guided expression synthesis with a face-parsing loss (paper B)."""
