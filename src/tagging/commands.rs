//! Library side of the `tag` and `check-rules` commands.
