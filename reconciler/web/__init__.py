"""The status page: what MICO's dashboard showed, read-only, as server-rendered HTML (no
JavaScript, no external assets) from the daemon's history and its last loaded config."""
