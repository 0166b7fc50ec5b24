"""Command-line tools (`python -m fergan.tools.<name>`); `cli` holds the absl command-line helpers
they share with the launchers and the benchmarks."""
