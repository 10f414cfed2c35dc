"""Runs: admission, per-identity limits, command policy, durable runs and their journals,
attach, and the wire form of run events."""
