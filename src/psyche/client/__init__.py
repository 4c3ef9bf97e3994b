"""The reference training client: it follows a run on chain, trains with torch and shares results over P2P.

It runs inside the client container (``python -m psyche.client``) and is the only package that imports torch.
"""
