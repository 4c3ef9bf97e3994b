"""The Solana side of Psyche: codecs, PDAs, instruction builders and RPC. No Docker, no torch."""
