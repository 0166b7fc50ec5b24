"""LSSL: attribute-guided expression synthesis with a landmark-heatmap side image (papers A, B)."""
