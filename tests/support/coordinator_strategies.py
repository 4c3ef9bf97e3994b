"""Hypothesis strategies for valid coordinator values (setup types, epoch state, whole accounts)."""

from __future__ import annotations

from hypothesis import strategies as st
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import (
    Bloom,
    ClientsState,
    ClientState,
    CoordinatorAccount,
    EpochClient,
    EpochRates,
    EpochState,
    LedgerClient,
    Round,
    RunState,
    Witness,
    WitnessProof,
)
from psyche.chain.accounts.model import (
    LLM,
    AdamW,
    Checkpoint,
    CheckpointKind,
    ConstantLR,
    CoordinatorConfig,
    CoordinatorProgress,
    CosineLR,
    DataLocation,
    DataLocationKind,
    Distro,
    DummyOptimizer,
    Gcp,
    GcsRepo,
    HttpDataLocation,
    HubRepo,
    LinearLR,
    LLMArchitecture,
    LLMTrainingDataType,
    NumberedFiles,
    RunMetadata,
    SingleUrl,
    TokenSize,
    WarmupStableDecayLR,
)

u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
f32s = st.floats(width=32, allow_nan=False)
f64s = st.floats(allow_nan=False)
pubkeys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)


def fixed_str(n: int) -> st.SearchStrategy[str]:
    """Strings that fit a FixedString<n> (≤ 4 bytes per char, no NUL, no lone surrogates)."""
    chars = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
    return st.text(alphabet=chars, max_size=n // 4)


metadata = st.builds(RunMetadata, fixed_str(64), fixed_str(280), u64, u64)
configs = st.builds(CoordinatorConfig, u64, u64, u64, u64, u64, u64, u32, u16, u16, u16, u16, u16, u8, u8)
progress = st.builds(CoordinatorProgress, u16, u32, u64)
hub_repos = st.builds(HubRepo, fixed_str(64), st.none() | fixed_str(64))
gcs_repos = st.builds(GcsRepo, fixed_str(64), st.none() | fixed_str(64))
checkpoints = st.one_of(
    st.just(Checkpoint(CheckpointKind.Ephemeral)),
    st.builds(
        Checkpoint, st.sampled_from([CheckpointKind.Dummy, CheckpointKind.Hub, CheckpointKind.P2P]), hub_repos
    ),
    st.builds(Checkpoint, st.sampled_from([CheckpointKind.Gcs, CheckpointKind.P2PGcs]), gcs_repos),
)
http_locations = st.one_of(
    st.builds(SingleUrl, fixed_str(192)),
    st.builds(NumberedFiles, fixed_str(64), u32, u8, u32),
    st.builds(Gcp, fixed_str(64), fixed_str(192)),
)
http = st.builds(
    HttpDataLocation,
    http_locations,
    st.sampled_from(TokenSize),
    st.none() | st.binary(min_size=32, max_size=32),
)
data_locations = st.one_of(
    st.just(DataLocation()),
    st.builds(DataLocation, st.just(DataLocationKind.Server), fixed_str(64)),
    st.builds(
        DataLocation,
        st.sampled_from(
            [DataLocationKind.Local, DataLocationKind.WeightedHttp, DataLocationKind.Preprocessed]
        ),
        fixed_str(192),
    ),
    st.builds(DataLocation, st.just(DataLocationKind.Http), http),
)
lr_schedules = st.one_of(
    st.builds(ConstantLR, f64s, f64s, u32),
    st.builds(LinearLR, f64s, f64s, f64s, u32, u32),
    st.builds(CosineLR, f64s, f64s, f64s, u32, u32),
    st.builds(WarmupStableDecayLR, f64s, f64s, f64s, f64s, u32, u32, u32, u32),
)
optimizers = st.one_of(
    st.just(DummyOptimizer()),
    st.builds(AdamW, st.tuples(f32s, f32s), f32s, f32s, st.none() | f32s),
    st.builds(Distro, st.none() | f32s, st.none() | f32s, f32s, u16, u16, st.booleans()),
)
models = st.builds(
    LLM,
    u32,
    u32,
    st.sampled_from(LLMArchitecture),
    checkpoints,
    st.sampled_from(LLMTrainingDataType),
    data_locations,
    lr_schedules,
    optimizers,
)
blooms = st.builds(Bloom, st.tuples(*[u64] * 8), st.tuples(*[u64] * 16))
proofs = st.builds(WitnessProof, u64, u64, st.booleans())
witnesses = st.builds(Witness, proofs, blooms, blooms, st.binary(min_size=32, max_size=32))
rounds = st.builds(Round, st.lists(witnesses, max_size=3).map(tuple), u64, u64, u32, u16, u16)
epoch_clients = st.builds(EpochClient, pubkeys, pubkeys, st.sampled_from(ClientState), u32)
epoch_states = st.builds(
    EpochState,
    st.tuples(rounds, rounds, rounds, rounds),
    st.lists(epoch_clients, max_size=5).map(tuple),
    st.lists(epoch_clients, max_size=5).map(tuple),
    u32,
    u32,
    u32,
    u64,
    st.booleans(),
    st.booleans(),
)
rates = st.builds(EpochRates, u64, u64)
ledger_clients = st.builds(LedgerClient, pubkeys, pubkeys, u64, u64, u64)
clients_states = st.builds(ClientsState, st.lists(ledger_clients, max_size=5).map(tuple), u64, rates, rates)
accounts = st.builds(
    CoordinatorAccount,
    version=st.just(1),
    metadata=metadata,
    run_id=fixed_str(32),
    run_state=st.sampled_from(RunState),
    model=models,
    config=configs,
    progress=progress,
    epoch_state=epoch_states,
    run_state_start_unix_timestamp=u64,
    pending_pause=st.booleans(),
    clients_state=clients_states,
    is_warmup_first_tick=st.booleans(),
    is_training_first_tick=st.booleans(),
    client_version=fixed_str(96),
    nonce=u64,
)
