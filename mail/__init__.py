"""Email transport and RFC 5322: IMAP in, parsing, classification, threading, SMTP out.

Imports `ticketing` (the domain), never Flask or `web`.
"""
