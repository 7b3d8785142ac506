"""The `noksr` command line: parses arguments and calls the core; heavy imports are lazy."""
