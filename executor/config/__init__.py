"""Configuration: the daemon's settings from flags, environment and the policy file."""
