"""An in-memory chain reader: accounts by address, seeded with our own encoders, counting round trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.coordinator import CoordinatorAccount, RunState
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.model import LLM
from psyche.chain.accounts.state import ClientsState, EpochClient, EpochState, LedgerClient
from psyche.chain.programs import (
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    JOIN_RUN_AUTHORIZATION_SCOPE,
)
from psyche.chain.queries import AccountReader
from psyche.chain.rpc import AccountInfo

OWNER = Pubkey.new_unique()
USER = Pubkey.new_unique()
MASTER = Pubkey.new_unique()
COORD = Pubkey.new_unique()
MINT = Pubkey.new_unique()


class FakeChain(AccountReader):
    """Accounts by address; counts reads the way an RPC node would see them (one per call)."""

    current_endpoint = "https://rpc.fake/?api-key=***"  # what RpcClient.current_endpoint gives: redacted

    def __init__(self) -> None:
        self.accounts: dict[Pubkey, AccountInfo] = {}
        self.round_trips = 0

    def put(self, address: Pubkey, data: bytes, owner: Pubkey, lamports: int = 1_000_000) -> None:
        self.accounts[address] = AccountInfo(data, owner, lamports)

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        self.round_trips += 1
        return self.accounts.get(pubkey)

    def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountInfo | None]:
        self.round_trips += 1
        return [self.accounts.get(k) for k in pubkeys]

    def get_program_accounts(
        self, program: Pubkey, filters: Sequence[int | tuple[int, bytes]] = ()
    ) -> list[tuple[Pubkey, bytes]]:
        self.round_trips += 1
        out = []
        for key, info in self.accounts.items():
            if info.owner != program:
                continue
            ok = all(
                len(info.data) == f if isinstance(f, int) else info.data[f[0] : f[0] + len(f[1])] == f[1]
                for f in filters
            )
            if ok:
                out.append((key, info.data))
        return out


def seed_run(
    chain: FakeChain,
    run_id: str = "test",
    *,
    state: RunState = RunState.WaitingForMembers,
    coordinator: Pubkey = COORD,
    epoch_clients: tuple[Pubkey, ...] = (),
    ledger: tuple[tuple[Pubkey, int], ...] = (),
    model: LLM | None = None,
) -> None:
    address, bump = pda.find_coordinator_instance(run_id)
    instance = CoordinatorInstance(bump, OWNER, OWNER, coordinator, run_id)
    chain.put(address, instance.encode(), COORDINATOR_PROGRAM_ID)
    acc = dataclasses.replace(
        CoordinatorAccount.initial(run_id, "v1"),
        run_state=state,
        epoch_state=EpochState(clients=tuple(EpochClient(k, k) for k in epoch_clients)),
        clients_state=ClientsState(clients=tuple(LedgerClient(k, k, earned=e) for k, e in ledger)),
    )
    if model is not None:
        acc = dataclasses.replace(acc, model=model)
    chain.put(coordinator, acc.encode(), COORDINATOR_PROGRAM_ID)


def seed_authorization(
    chain: FakeChain, grantee: Pubkey, *, active: bool = True, delegates: tuple[Pubkey, ...] = ()
) -> Pubkey:
    address, bump = pda.find_authorization(OWNER, grantee)
    auth = Authorization(bump, OWNER, grantee, JOIN_RUN_AUTHORIZATION_SCOPE, active, delegates, 0)
    chain.put(address, auth.encode(), AUTHORIZER_PROGRAM_ID)
    return address
