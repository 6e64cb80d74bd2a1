"""The telephony lab: real Asterisk 22 (Debian sid chroot), Redis and the
gateway on one machine, for development, demos and integration tests.

    from gateway.lab import Lab, CallRequest
    lab = Lab()
    lab.up(gateway=False)
    result = lab.call(CallRequest(hangup_after=15))
    lab.down()

The command line is ``hotline-lab`` (``python -m gateway.lab``).
"""

from .callflow import CallRequest, CallResult
from .errors import LabError
from .lab import Lab
from .settings import LabSettings

__all__ = ["CallRequest", "CallResult", "Lab", "LabError", "LabSettings"]
