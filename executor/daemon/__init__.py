"""The daemon and its state: the Daemon, serving the listener, shutdown, metrics."""
