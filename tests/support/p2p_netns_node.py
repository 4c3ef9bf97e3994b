"""One P2P node for tests/integration/test_p2p_netns.py, run inside a network namespace.

``python -m tests.support.p2p_netns_node INDEX COUNT`` with P2P_* in the environment: starts a node with
identity seed bytes([INDEX + 1]) * 32, allows the COUNT test identities, waits for every peer, publishes
a 1 MiB blob and broadcasts its ticket, fetches every other node's blob from its announcer, prints one
JSON line of what happened, then keeps serving until stdin closes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time

from psyche.client.identity import P2PIdentity
from psyche.p2p.node import P2PNode
from psyche.p2p.settings import load_p2p_settings
from psyche.p2p.wire import Broadcast, Proof, TrainingResult, decode_broadcast, encode_broadcast

BLOB_BYTES = 1024 * 1024


def blob_of(index: int) -> bytes:
    return hashlib.sha256(bytes([index])).digest() * (BLOB_BYTES // 32)


def main(index: int, count: int) -> int:
    ids = [P2PIdentity(bytes([i + 1]) * 32) for i in range(count)]
    me = ids[index]
    settings = load_p2p_settings(os.environ)
    inbox: list[tuple[bytes, Broadcast]] = []
    arrived = threading.Condition()

    def on_message(sender: bytes, data: bytes) -> None:
        with arrived:
            inbox.append((sender, decode_broadcast(data)))
            arrived.notify_all()

    node = P2PNode.from_settings(me, settings, on_message, discovery_interval=0.3).start()
    report: dict[str, object] = {"index": index, "address": list(node.address)}
    try:
        node.set_allowed({i.public for i in ids})
        deadline = time.monotonic() + 10
        while len(node.peers()) < count - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        report["peers"] = sorted(f"{h}:{p}" for h, p in node.peers().values())
        ticket = node.publish(blob_of(index), 1)
        broadcast = Broadcast(
            1,
            Proof(0, index, index),
            ticket.blob,
            me.sign(ticket.blob),
            0,
            TrainingResult((index, index), ticket),
        )
        # Resend until every peer took it (a peer may still be finding us); gossip is lossy upstream too.
        while node.send_all(encode_broadcast(broadcast)) < count - 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        with arrived:
            arrived.wait_for(lambda: len({s for s, _ in inbox}) >= count - 1, timeout=10)
        fetched = {}
        for sender, b in inbox:
            assert isinstance(b.body, TrainingResult)
            data = node.fetch(b.body.ticket, sender, [], BLOB_BYTES, 5.0)
            fetched[ids.index(next(i for i in ids if i.public == sender))] = data == blob_of(b.proof.index)
        report["fetched"] = {str(k): v for k, v in sorted(fetched.items())}
        report["tickets"] = sorted(
            {
                f"{b.body.ticket.host}:{b.body.ticket.port}"
                for _, b in inbox
                if isinstance(b.body, TrainingResult)
            }
        )
        report["stats"] = node.stats()
    except Exception as exc:  # reported to the test, which shows it
        report["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report), flush=True)
    sys.stdin.read()  # keep serving blobs to slower peers until the test is done
    node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
