"""Command-line tools (`python -m fergan.tools.<name>`)."""
