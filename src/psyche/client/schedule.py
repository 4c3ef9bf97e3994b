"""The run's learning-rate schedules (Constant, Linear, Cosine, WarmupStableDecay) as a step -> lr map."""

from __future__ import annotations

import math

from psyche.chain.accounts.model import (
    ConstantLR,
    CosineLR,
    LearningRateSchedule,
    LinearLR,
    WarmupStableDecayLR,
)


def _ramp(start: float, end: float, done: int, total: int) -> float:
    """Linear from ``start`` to ``end`` as ``done`` goes 0..total (clamped)."""
    if total <= 0:
        return end
    return start + (end - start) * min(max(done, 0), total) / total


def _cosine(start: float, end: float, done: int, total: int) -> float:
    if total <= 0:
        return end
    progress = min(max(done, 0), total) / total
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def lr_at(schedule: LearningRateSchedule, step: int) -> float:
    """The learning rate at ``step`` (0-based count of optimizer steps already taken).

    Every schedule warms up linearly from ``warmup_init_lr`` to ``base_lr`` over ``warmup_steps``; then
    Constant stays, Linear and Cosine decay to ``final_lr`` at ``total_steps``, and WarmupStableDecay holds
    ``stable_steps``, decays by cosine to ``cosine_decay_final_lr`` over ``cosine_decay_steps``, then
    linearly to ``linear_decay_final_lr`` over ``linear_decay_steps``."""
    warm = schedule.warmup_steps
    if step < warm:
        return _ramp(schedule.warmup_init_lr, schedule.base_lr, step, warm)
    after = step - warm
    if isinstance(schedule, ConstantLR):
        return schedule.base_lr
    if isinstance(schedule, LinearLR):
        return _ramp(schedule.base_lr, schedule.final_lr, after, schedule.total_steps - warm)
    if isinstance(schedule, CosineLR):
        return _cosine(schedule.base_lr, schedule.final_lr, after, schedule.total_steps - warm)
    if isinstance(schedule, WarmupStableDecayLR):
        if after < schedule.stable_steps:
            return schedule.base_lr
        after -= schedule.stable_steps
        if after < schedule.cosine_decay_steps:
            return _cosine(
                schedule.base_lr, schedule.cosine_decay_final_lr, after, schedule.cosine_decay_steps
            )
        after -= schedule.cosine_decay_steps
        return _ramp(
            schedule.cosine_decay_final_lr, schedule.linear_decay_final_lr, after, schedule.linear_decay_steps
        )
    raise TypeError(f"unknown learning-rate schedule {schedule!r}")
