"""Checks and executes one transaction atomically on a working copy of the accounts (with CPI and logs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solders.instruction import Instruction
from solders.message import Message, MessageV0, MessageV1
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from psyche.localnet.budget import BudgetError, compute_budget, duplicate_key
from psyche.localnet.ledger import LAMPORTS_PER_SIGNATURE, Ledger, rent_exempt_minimum
from psyche.localnet.programs.base import AccountRef, InstructionError, ProgramRegistry
from psyche.localnet.records import Account, TxRecord

AnyMessage = Message | MessageV0 | MessageV1
MAX_INVOKE_DEPTH = 5
# A flat, documented cost per invocation (docs/localnet.md), charged against the transaction's compute
# budget when the program is entered: Solana's 150 for a native builtin; for a program that is BPF on a
# real cluster (SPL Token, ATA, the Psyche programs) a figure of the order of a small Anchor instruction.
NATIVE_UNITS = 150
PROGRAM_UNITS = 3_000


@dataclass(slots=True)
class ExecutionResult:
    """What happened to one transaction; ``accounts``: post-execution states (for simulation)."""

    signature: Signature
    err: Any
    logs: list[str]
    units: int
    fee: int
    accounts: dict[Pubkey, Account]
    record: TxRecord | None = None


def writable_flags(message: AnyMessage) -> list[bool]:
    """Each static key's writability from the header, with invoked program ids demoted to read-only."""
    keys = list(message.account_keys)
    h = message.header
    n = len(keys)
    signed = h.num_required_signatures
    flags = []
    for i in range(n):
        if i < signed:
            w = i < signed - h.num_readonly_signed_accounts
        else:
            w = i < n - h.num_readonly_unsigned_accounts
        flags.append(w and not message.is_key_called_as_program(i))
    return flags


def message_fee(message: AnyMessage) -> int:
    """5000 lamports per signature plus the prioritization fee (SetComputeUnitPrice x the unit limit)."""
    try:
        priority = compute_budget(message).prioritization_fee
    except BudgetError:
        priority = 0
    return LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + priority


class _Frame:
    """One program invocation; implements the programs' Context protocol."""

    def __init__(
        self, ex: _TxExecution, program_id: Pubkey, accounts: list[AccountRef], data: bytes, depth: int
    ):
        self._ex = ex
        self.program_id = program_id
        self.accounts = accounts
        self.data = data
        self.depth = depth
        self.snapshot = ex.snapshot(accounts)

    @property
    def unix_timestamp(self) -> int:
        return self._ex.unix_timestamp

    @property
    def slot(self) -> int:
        return self._ex.ledger.slot

    def rent_exempt_minimum(self, size: int) -> int:
        return rent_exempt_minimum(size)

    def log(self, message: str) -> None:
        self._ex.logs.append(f"Program log: {message}")

    def account(self, index: int) -> AccountRef:
        if index >= len(self.accounts):
            raise InstructionError("NotEnoughAccountKeys")
        return self.accounts[index]

    def invoke(self, instruction: Instruction, signer_seeds: Sequence[Sequence[bytes]] = ()) -> None:
        if self.depth >= MAX_INVOKE_DEPTH:
            raise InstructionError("CallDepth")
        # The caller's own changes so far must be legal before the callee sees them (Solana checks here too).
        self._ex.verify(self.snapshot, self.accounts, self.program_id)
        pdas = set()
        for seeds in signer_seeds:
            try:
                pdas.add(Pubkey.create_program_address(list(seeds), self.program_id))
            except Exception as exc:  # solders raises a plain error for off-curve failures
                raise InstructionError("InvalidSeeds") from exc
        privileges: dict[Pubkey, tuple[bool, bool]] = {}
        for ref in self.accounts:
            signer, writable = privileges.get(ref.key, (False, False))
            privileges[ref.key] = (signer or ref.is_signer, writable or ref.is_writable)
        if instruction.program_id not in privileges:
            self._ex.logs.append(f"Unknown program {instruction.program_id}")
            raise InstructionError("MissingAccount")
        refs = []
        for meta in instruction.accounts:
            if meta.pubkey not in privileges:
                self._ex.logs.append(f"Instruction references an unknown account {meta.pubkey}")
                raise InstructionError("MissingAccount")
            signer, writable = privileges[meta.pubkey]
            if meta.is_signer and not (signer or meta.pubkey in pdas):
                self._ex.logs.append(f"{meta.pubkey}'s signer privilege escalated")
                raise InstructionError("PrivilegeEscalation")
            if meta.is_writable and not writable:
                self._ex.logs.append(f"{meta.pubkey}'s writable privilege escalated")
                raise InstructionError("PrivilegeEscalation")
            refs.append(
                AccountRef(meta.pubkey, meta.is_signer, meta.is_writable, self._ex.working[meta.pubkey])
            )
        self._ex.run(instruction.program_id, refs, bytes(instruction.data), self.depth + 1)
        self.snapshot = self._ex.snapshot(self.accounts)


class _TxExecution:
    """The mutable state of one transaction's execution."""

    def __init__(
        self, ledger: Ledger, registry: ProgramRegistry, working: dict[Pubkey, Account], budget: int
    ):
        self.ledger = ledger
        self.registry = registry
        self.working = working
        self.logs: list[str] = []
        self.units = 0
        self.budget = budget
        self.unix_timestamp = ledger.unix_timestamp()

    def snapshot(self, refs: list[AccountRef]) -> dict[Pubkey, Account]:
        return {ref.key: ref.account.copy() for ref in refs}

    def verify(self, snapshot: dict[Pubkey, Account], refs: list[AccountRef], program_id: Pubkey) -> None:
        """Solana's post-instruction rules: ownership, read-only, executable, and balanced lamports."""
        writable = {ref.key for ref in refs if ref.is_writable}
        pre_sum = post_sum = 0
        for key, pre in snapshot.items():
            post = self.working[key]
            pre_sum += pre.lamports
            post_sum += post.lamports
            if pre.owner != post.owner and (
                key not in writable or pre.owner != program_id or pre.executable or any(post.data)
            ):
                raise InstructionError("ModifiedProgramId")
            if post.lamports < pre.lamports and pre.owner != program_id:
                raise InstructionError("ExternalAccountLamportSpend")
            if post.lamports != pre.lamports and key not in writable:
                raise InstructionError("ReadonlyLamportChange")
            if post.data != pre.data:
                if key not in writable:
                    raise InstructionError("ReadonlyDataModified")
                if pre.owner != program_id:
                    raise InstructionError("ExternalAccountDataModified")
            if post.executable != pre.executable:
                raise InstructionError("ExecutableModified")
        if pre_sum != post_sum:
            raise InstructionError("UnbalancedInstruction")

    def run(self, program_id: Pubkey, refs: list[AccountRef], data: bytes, depth: int) -> None:
        self.logs.append(f"Program {program_id} invoke [{depth}]")
        program = self.registry.get(program_id)
        if program is None:
            self.logs.append(
                f"Program {program_id} failed: {InstructionError('UnsupportedProgramId').describe()}"
            )
            raise InstructionError("UnsupportedProgramId")
        frame = _Frame(self, program_id, refs, data, depth)
        cost = NATIVE_UNITS if program.native else PROGRAM_UNITS
        remaining = self.budget - self.units
        if cost > remaining:  # the meter runs dry inside the program: Solana's two outcomes
            self.units = self.budget
            if program.native:
                err = InstructionError("ComputationalBudgetExceeded")
                self.logs.append(f"Program {program_id} failed: {err.describe()}")
                raise err
            self.logs.append(f"Program {program_id} consumed {remaining} of {remaining} compute units")
            self.logs.append(f"Program {program_id} failed: exceeded CUs meter at BPF instruction")
            raise InstructionError("ProgramFailedToComplete")
        self.units += cost
        try:
            program.process(frame)
            self.verify(frame.snapshot, refs, program_id)
        except InstructionError as err:
            self._consumed(program_id, cost, remaining, program.native)
            self.logs.append(f"Program {program_id} failed: {err.describe()}")
            raise
        self._consumed(program_id, cost, remaining, program.native)
        self.logs.append(f"Program {program_id} success")

    def _consumed(self, program_id: Pubkey, cost: int, remaining: int, native: bool) -> None:
        if not native:
            self.logs.append(f"Program {program_id} consumed {cost} of {remaining} compute units")


class Executor:
    """Turns a signed transaction into a :class:`TxRecord` and account changes, all or nothing."""

    def __init__(self, ledger: Ledger, registry: ProgramRegistry) -> None:
        self.ledger = ledger
        self.registry = registry

    def execute(
        self,
        tx: VersionedTransaction,
        raw: bytes,
        *,
        commit: bool,
        sig_verify: bool = True,
        check_blockhash: bool = True,
    ) -> ExecutionResult:
        """Check then run ``tx``; with ``commit`` it lands on the ledger (fee charged even on failure)."""
        message = tx.message
        signature = tx.signatures[0]
        keys = list(message.account_keys)
        fee = message_fee(message)
        result = ExecutionResult(signature, None, [], 0, 0, {})
        early = self._pre_checks(tx, message, keys, fee, sig_verify, check_blockhash)
        if early is None:
            try:
                budget = compute_budget(message).unit_limit
            except BudgetError as exc:
                early = exc.err
        if early is not None:
            result.err = early
            return result
        writable = writable_flags(message)
        pre = {k: (self.ledger.get(k) or Account()) for k in keys}
        working = {k: a.copy() for k, a in pre.items()}
        working[keys[0]].lamports -= fee
        after_fee = working[keys[0]].copy()
        instructions = list(message.instructions)
        ex = _TxExecution(self.ledger, self.registry, working, budget)
        err: Any = None
        for index, ix in enumerate(instructions):
            refs = [
                AccountRef(keys[i], message.is_signer(i), writable[i], working[keys[i]]) for i in ix.accounts
            ]
            try:
                ex.run(keys[ix.program_id_index], refs, bytes(ix.data), 1)
            except InstructionError as exc:
                err = {"InstructionError": [index, exc.to_json()]}
                break
        if err is None:
            err = self._rent_check(keys, writable, pre, working)
        result.err, result.logs, result.units, result.fee = err, ex.logs, ex.units, fee
        if err is None:
            changes: dict[Pubkey, Account | None] = {
                k: working[k] for k, w in zip(keys, writable, strict=True) if w
            }
        else:
            changes = {keys[0]: after_fee}
        result.accounts = {k: changes.get(k) or pre[k] for k in keys}
        if commit:
            record = TxRecord(
                signature=signature,
                slot=self.ledger.slot,
                block_time=ex.unix_timestamp,
                err=err,
                logs=ex.logs,
                fee=fee,
                pre_balances=[pre[k].lamports for k in keys],
                post_balances=[result.accounts[k].lamports for k in keys],
                units=ex.units,
                raw=raw,
            )
            self.ledger.commit(changes, record)
            result.record = record
        return result

    def _pre_checks(
        self,
        tx: VersionedTransaction,
        message: AnyMessage,
        keys: list[Pubkey],
        fee: int,
        sig_verify: bool,
        check_blockhash: bool,
    ) -> Any:
        if sig_verify and not all(tx.verify_with_results()):
            return "SignatureFailure"
        if isinstance(message, MessageV1):
            return "UnsupportedVersion"
        if isinstance(message, MessageV0) and list(message.address_table_lookups):
            return "AddressLookupTableNotFound"
        if duplicate_key(message):  # found when the bank locks the accounts, before the blockhash check
            return "AccountLoadedTwice"
        if check_blockhash and not self.ledger.is_blockhash_valid(message.recent_blockhash):
            return "BlockhashNotFound"
        if tx.signatures[0] in self.ledger.transactions:
            return "AlreadyProcessed"
        payer = self.ledger.get(keys[0])
        if payer is None:
            return "AccountNotFound"
        if not writable_flags(message)[0] or payer.data or payer.owner != Account().owner:
            return "InvalidAccountForFee"
        if payer.lamports < fee:
            return "InsufficientFundsForFee"
        for ix in message.instructions:
            program_id = keys[ix.program_id_index]
            if self.registry.get(program_id) is None:
                account = self.ledger.get(program_id)
                return "ProgramAccountNotFound" if account is None else "InvalidProgramForExecution"
        return None

    @staticmethod
    def _rent_check(
        keys: list[Pubkey], writable: list[bool], pre: dict[Pubkey, Account], working: dict[Pubkey, Account]
    ) -> Any:
        # A writable account may not end below rent exemption unless it was already there at the same size.
        for index, (key, w) in enumerate(zip(keys, writable, strict=True)):
            post = working[key]
            if not w or post.lamports == 0 or post.lamports >= rent_exempt_minimum(len(post.data)):
                continue
            before = pre[key]
            was_paying = 0 < before.lamports < rent_exempt_minimum(len(before.data))
            if not (was_paying and len(before.data) == len(post.data) and post.lamports <= before.lamports):
                return {"InsufficientFundsForRent": {"account_index": index}}
        return None
