"""Command modules: each parses options, asks the factory for services, calls them, renders."""
