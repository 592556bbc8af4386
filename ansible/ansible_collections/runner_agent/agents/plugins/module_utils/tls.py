# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""What the runner_agent modules say when a server's certificate is refused.

Standard library only: this file travels with the modules to the target host (AnsiballZ).
"""

from __future__ import annotations

import ssl


def refused_certificate(exc):
    """A sentence for a server certificate this side refused (an unknown CA, a name the
    certificate does not hold, expired), or None for any other error. urllib wraps the SSL
    error in URLError.reason; a bare socket raises it as it is (its own ``reason`` is a text)."""
    reason = exc if isinstance(exc, ssl.SSLError) else getattr(exc, "reason", None)
    if not isinstance(reason, ssl.SSLCertVerificationError):
        return None
    return ("the server's certificate was refused (%s): give the CA that signed it as ca_cert, "
            "and reach the server by a name the certificate holds"
            % (reason.verify_message or reason))
