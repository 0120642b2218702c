"""Who this operator process is, without needing a passwd entry for its uid.

kopf names the process for peering with ``getpass.getuser()``, which raises
``KeyError: 'getpwuid(): uid not found'`` under an arbitrary uid with no passwd entry: what
OpenShift's restricted policy runs every pod as, and what any ``runAsUser`` the image does not
know produces. The operator therefore hands kopf its identity itself.
"""

from __future__ import annotations

import getpass
import os
import socket


def login_name() -> str:
    """The login name ($LOGNAME, $USER, ..., passwd), else the numeric uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no such variables and no passwd entry for the uid
        return str(os.getuid())


def peering_identity() -> str:
    """kopf's identity: ``POD_ID`` (kopf's own variable) when set, else ``user@host``."""
    return os.environ.get("POD_ID") or f"{login_name()}@{socket.gethostname()}"
