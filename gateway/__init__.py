"""12345 hotline telephony and IVR gateway."""

__version__ = "0.1.0"
