"""Pure logic usable by every layer."""
