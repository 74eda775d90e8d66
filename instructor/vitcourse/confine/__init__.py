"""The host side of the sandbox: bubblewrap, the warm zygote, sessions, limits, control groups."""
