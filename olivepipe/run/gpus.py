"""Which GPU a GPU node runs on: one GPU per node, small nodes packed by memory.

A node without a memory estimate takes a whole GPU (or one of ``per_gpu`` slots of it,
when --gpu-slots asks for more GPU nodes than there are GPUs). A node with one
(`gpu_memory_gb`) shares a GPU with other estimated nodes while their estimates fit
its memory; the tightest GPU that fits is chosen, keeping large GPUs free for large
nodes. The executor pins the job to its GPU (CUDA_VISIBLE_DEVICES for local workers).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gpu:
    index: str  # as CUDA_VISIBLE_DEVICES names it
    memory_mib: int | None = None  # None: unknown (then only whole-GPU tenancy is possible)
    name: str = ""


@dataclass
class _Slot:
    gpu: Gpu
    tenants: dict = field(default_factory=dict)  # step -> MiB (None: exclusive)

    @property
    def exclusive(self) -> int:
        """How many unestimated tenants it has (they share by slots, not by memory)."""
        return sum(1 for v in self.tenants.values() if v is None)

    @property
    def used(self) -> int:
        return sum(v for v in self.tenants.values() if v is not None)


class GpuAllocator:
    """Hands out GPUs to steps; ``limit`` caps GPU steps running at once (--gpu-slots)."""

    def __init__(self, gpus: list[Gpu], limit: int | None = None, per_gpu: int = 1):
        self.slots = [_Slot(g) for g in gpus]
        self.limit = limit
        self.per_gpu = max(1, per_gpu)
        self.where: dict[str, str] = {}

    def fits_anywhere(self, need_mib: int | None) -> bool:
        """Whether a step with this estimate could ever run on one of these GPUs."""
        if not self.slots:
            return False
        if need_mib is None:
            return True
        return any(s.gpu.memory_mib is None or need_mib <= s.gpu.memory_mib for s in self.slots)

    def take(self, step: str, need_mib: int | None) -> str | None:
        """A GPU for ``step`` now, or None if it must wait."""
        if self.limit is not None and len(self.where) >= self.limit:
            return None
        best = None
        for s in self.slots:
            if need_mib is None:
                ok = s.exclusive == len(s.tenants) and s.exclusive < self.per_gpu
                spare = s.exclusive
            else:
                known = s.gpu.memory_mib
                ok = not s.exclusive and (known is None and not s.tenants or
                                          known is not None and s.used + need_mib <= known)
                spare = (known - s.used - need_mib) if known is not None else 0
            if ok and (best is None or spare < best[0]):
                best = (spare, s)
        if best is None:
            return None
        best[1].tenants[step] = need_mib
        self.where[step] = best[1].gpu.index
        return best[1].gpu.index

    def give(self, step: str) -> None:
        index = self.where.pop(step, None)
        for s in self.slots:
            if s.gpu.index == index:
                s.tenants.pop(step, None)


def parse_gib(value) -> int | None:
    """`gpu_memory_gb: 16` -> MiB."""
    if value is None:
        return None
    return int(float(value) * 1024)
