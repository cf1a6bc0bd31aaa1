"""Everything past the workshop's files, one module per concern, each named for what it holds: README's Files
section lists them. A learner opens one only when they use what it is for."""
