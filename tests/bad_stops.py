"""Criteria that break the shared rules, named by import path in tests/test_own_criteria.py."""

from ray_nas.criteria import StopResult, Trajectory, no_stop


def epoch_zero(traj: Trajectory) -> StopResult:
    return StopResult(epoch=0, fired=True, arch=traj.archs[0])


def past_the_end(traj: Trajectory) -> StopResult:
    return StopResult(epoch=traj.last_epoch + 1, fired=True, arch=traj.archs[-1])


def not_a_result(traj: Trajectory) -> int:
    return traj.last_epoch


def raises(traj: Trajectory) -> StopResult:
    raise RuntimeError("boom at the last epoch")


def unfired_early(traj: Trajectory) -> StopResult:
    return StopResult(epoch=1, fired=False, arch=traj.archs[1])


def needs_level(traj: Trajectory, level: float, ops: list[str] = ("none",)) -> StopResult:
    """Not fired, whatever the level (a signature with a required parameter)."""
    return no_stop(traj, f"level {level}, ops {ops}")


NOT_CALLABLE = 3


def exits(traj: Trajectory) -> StopResult:
    import sys

    sys.exit(3)


def interrupts(traj: Trajectory) -> StopResult:
    raise KeyboardInterrupt
