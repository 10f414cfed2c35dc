"""Claude Code runs: the profile (argv, environment, flag policy), its stream and watcher, and
the claims on Claude session ids."""
