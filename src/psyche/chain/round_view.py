"""Read-only views a training client needs from the account: rounds, its proofs, and its samples."""

from __future__ import annotations

from solders.pubkey import Pubkey

from psyche.chain import committee
from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.state import EpochClient, Round, WitnessProof
from psyche.chain.data_selection import BatchAssignment, assign_batches, batch_size, trainer_indices

NUM_ROUNDS = 4


def current_round(acc: CoordinatorAccount) -> Round:
    """The round at ``rounds_head``."""
    es = acc.epoch_state
    return es.rounds[es.rounds_head]


def previous_round(acc: CoordinatorAccount) -> Round | None:
    """The round before the current one; None during the epoch's first round."""
    es = acc.epoch_state
    if es.rounds_head == 0 and es.rounds[0].height == 0:
        return None
    return es.rounds[(es.rounds_head - 1) % NUM_ROUNDS]


def historical_clients(acc: CoordinatorAccount, clients_len: int) -> list[EpochClient]:
    """The epoch clients as they were in a round of ``clients_len`` clients (exited ones taken back)."""
    es = acc.epoch_state
    out: list[EpochClient] = []
    for n in range(clients_len):
        if n < len(es.clients):
            out.append(es.clients[n])
        else:
            offset = clients_len - n - 1
            if offset < len(es.exited_clients):
                out.append(es.exited_clients[-1 - offset])
    return out


def client_index(acc: CoordinatorAccount, signer: Pubkey) -> int | None:
    """Index of ``signer`` among the current epoch clients."""
    for i, c in enumerate(acc.epoch_state.clients):
        if c.signer == signer:
            return i
    return None


def witness_proof(acc: CoordinatorAccount, signer: Pubkey, rnd: Round | None = None) -> WitnessProof | None:
    """The proof ``signer`` sends with `witness` for ``rnd`` (default current); ``.witness`` = elected.

    None when ``signer`` is not an epoch client of that round.
    """
    r = current_round(acc) if rnd is None else rnd
    index = client_index(acc, signer)
    if index is None or index >= r.clients_len:
        return None
    position = committee.witness_position(index, r.clients_len, r.random_seed)
    elected = committee.is_witness_position(position, acc.config.witness_nodes)
    return WitnessProof(position=position, index=index, witness=elected)


def committee_proof(acc: CoordinatorAccount, index: int, rnd: Round) -> tuple[int, int]:
    """(committee code, position) of epoch client ``index`` in ``rnd``, as health_check wants it."""
    position = committee.committee_position(index, rnd.clients_len, rnd.random_seed)
    code = committee.committee_from_position(
        position, rnd.clients_len, rnd.tie_breaker_tasks, acc.config.verification_percent
    )
    return code, position


def round_batch_size(acc: CoordinatorAccount, rnd: Round) -> int:
    """Global batch size (samples) of ``rnd``."""
    return batch_size(acc.config, rnd.data_index, acc.model.max_seq_len)


def round_assignments(acc: CoordinatorAccount, rnd: Round | None = None) -> list[BatchAssignment[Pubkey]]:
    """Who trains which samples in ``rnd`` (default current), using that round's client list."""
    r = current_round(acc) if rnd is None else rnd
    clients = historical_clients(acc, r.clients_len)
    trainers = [
        clients[i].signer
        for i in trainer_indices(
            len(clients), r.random_seed, r.tie_breaker_tasks, acc.config.verification_percent
        )
    ]
    return assign_batches(trainers, r.random_seed, r.data_index, round_batch_size(acc, r))


def assignment_for(
    acc: CoordinatorAccount, signer: Pubkey, rnd: Round | None = None
) -> BatchAssignment[Pubkey] | None:
    """``signer``'s interval in ``rnd`` (default current), or None if it trains nothing."""
    return next((a for a in round_assignments(acc, rnd) if a.trainer == signer), None)
