# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""HTTP for the runner_agent modules: Ansible's Request with TLS settings built once per run.

Ansible's open_url builds a new SSL context for every request, loading the system's CA
certificates each time (tens of milliseconds); a module that sends a few hundred requests
builds one per scheme instead, and none that loads certificates for plain http.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from ansible.module_utils.urls import Request, make_context


def control(text):
    """Whether ``text`` holds a C0 control character or DEL (what splits an HTTP header)."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def url_problem(url, name="url"):
    """Why ``url`` must not be used, or None. Checked before the URL is quoted anywhere:
    credentials in it would be published with the module's outputs (reports, state) and
    urllib never sends them; http.client refuses spaces and control characters with an
    exception the module would not have caught (InvalidURL)."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError as exc:  # an unclosed IPv6 bracket, a bad port
        return "%s is not a URL: %s" % (name, exc)
    if "@" in netloc:
        return "%s must not hold credentials (user:password@): give the secret as its own option" % name
    if control(url) or " " in url:
        return "%s holds a space or a control character (CR, LF, ...): percent-encode it" % name
    return None


class HTTP(object):
    """Requests with one timeout and one TLS setting: CA file, client certificate, checks."""

    def __init__(self, timeout=10, ca_cert=None, client_cert=None, client_key=None,
                 validate_certs=True):
        self.timeout = timeout
        self.tls = dict(cafile=ca_cert, client_cert=client_cert, client_key=client_key,
                        validate_certs=validate_certs)
        self._contexts = {}

    def context(self, url):
        scheme = "https" if url.startswith("https://") else "http"
        if scheme not in self._contexts:
            if scheme == "https":
                self._contexts[scheme] = make_context(**self.tls)
            else:  # never used for a plain connection; spares loading the system's CAs
                self._contexts[scheme] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return self._contexts[scheme]

    def open(self, method, url, data=None, headers=None):
        """The response (raises urllib's HTTPError for error statuses, like open_url).

        Redirects are not followed (a token must not travel to another host) and ~/.netrc is
        not read (credentials come from the task only).
        """
        return Request().open(
            method, url, data=data, headers=headers, timeout=self.timeout,
            follow_redirects="none", use_netrc=False, context=self.context(url),
        )
