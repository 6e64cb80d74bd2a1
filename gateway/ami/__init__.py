"""Asterisk Manager Interface: pure codec and the Twisted protocol."""
