"""Loaded (via PYTHONPATH) by the local training container: SageMaker's host names resolve to loopback.

In a SageMaker cluster every host resolves algo-1, algo-2, ... and the sagemaker-training toolkit waits
until they do. Locally every host is this machine, so the names map to 127.0.0.1, for Python's resolver
only (torchrun's C++ rendezvous is given MASTER_ADDR instead). Nothing else changes.
"""

from __future__ import annotations

import re
import socket
from typing import Any

_HOST = re.compile(r"^algo-\d+$")
_gethostbyname = socket.gethostbyname
_getaddrinfo = socket.getaddrinfo


def _loopback(host: Any) -> Any:
    return "127.0.0.1" if isinstance(host, str) and _HOST.match(host) else host


def gethostbyname(host: str) -> str:
    return _gethostbyname(_loopback(host))


def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    return _getaddrinfo(_loopback(host), *args, **kwargs)


socket.gethostbyname = gethostbyname
socket.getaddrinfo = getaddrinfo
