"""The operator CLI: `odr token`, `odr stack` (what `make run` starts), and admin commands."""
