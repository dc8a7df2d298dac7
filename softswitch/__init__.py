"""softswitch: a pure-Python SIP/RTP softswitch with a built-in ACD."""

__version__ = "0.1.0"
