"""The source stage: config files from the working tree or a git revision, as bytes by path."""
