"""Brokers: the Broker protocol (base), the simulated exchange (sim), the Alpaca adapter."""
