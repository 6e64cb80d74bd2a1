"""FastAGI: wire codec, Twisted protocol, call-session API, script registry, server."""
