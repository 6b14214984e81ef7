"""Command-line tools: demo and helpers built on the core and the nodes."""
