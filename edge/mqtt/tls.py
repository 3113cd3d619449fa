"""The client side of mqtts://: a client certificate whose key nobody is asked about.

Given an encrypted (passphrase-protected) key and no passphrase, OpenSSL asks for one on the
terminal: a daemon whose stdin is a pipe (a script, a container, a supervisor) then waits for
ever before it logs a word, and with stdin closed the error is `[Errno 22] Invalid argument`.
Here the key's passphrase is asked of a callback that refuses, so an encrypted key is an error
that says so, at once.
"""

from __future__ import annotations

import ssl


class EncryptedKeyError(Exception):
    """The client certificate's key is encrypted, and nothing can ask for its passphrase."""


def _refuse_passphrase() -> bytes:
    raise EncryptedKeyError


def load_client_certificate(context: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    """`context.load_cert_chain` without a passphrase prompt: raises EncryptedKeyError for an
    encrypted key, ssl.SSLError or OSError for files that do not load or do not match."""
    context.load_cert_chain(certfile, keyfile, password=_refuse_passphrase)


def decrypt_it(keyfile: str | None, certfile: str) -> str:
    """What to do about an encrypted key (held in `keyfile`, or else in `certfile`)."""
    key = keyfile or certfile
    return (f"{key} holds an encrypted (passphrase-protected) private key, and nothing can "
            f"ask for its passphrase here; decrypt it once (`openssl pkey -in {key} -out "
            "client.key`, which asks for it) and give that file, readable by this user only "
            "(chmod 600)")
