"""Command handlers, one module per command group; importing this package registers them."""
