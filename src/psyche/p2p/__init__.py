"""The reference client's peer-to-peer transport: signed messages, blobs, discovery, model sharing.

HTTP/1.1 over TCP (stdlib server, httpx client); see docs/decisions.md "P2P transport". No torch here.
"""
