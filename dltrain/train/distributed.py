"""Data-parallel training on PyTorch's own engine: `torchrun --nproc-per-node N -m dltrain fit ...`.

torchrun starts N processes and gives each RANK, LOCAL_RANK and WORLD_SIZE; dltrain joins them in
one process group (gloo on CPU, nccl on CUDA), wraps the model in DistributedDataParallel, gives
each rank its share of every global batch, and gathers predictions so that every rank computes
the same metrics as one process would. Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """Where this process stands: rank `rank` of `world` (1 and 0 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def share(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's part of rows [lo, hi): contiguous, sizes differing by at most one."""
        n = hi - lo
        return lo + n * self.rank // self.world, lo + n * (self.rank + 1) // self.world

    # ----- collectives (no-ops for one process)

    def broadcast(self, value):
        """Rank 0's value, on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, value) -> list:
        """Every rank's value, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            tensor = tensor.clone()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (a signal that reached some ranks only)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """All ranks' rows concatenated in rank order; sizes may differ, no padding is kept."""
        if not self.enabled:
            return tensor
        sizes = self.gather_objects(int(tensor.shape[0]))
        padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Group()


def launched() -> bool:
    """True under torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device_name: str) -> tuple[Group, torch.device | None]:
    """Join torchrun's process group; the device of this rank (None: decide as usual)."""
    if not launched():
        return SINGLE, None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Group(rank, world, local_rank), torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def leave(failed: bool = False) -> None:
    """Leave the process group: after a barrier, so that no rank tears it down while another still
    talks to it; without one when this rank failed (its peers may be gone: a barrier would raise
    again, or wait for ever)."""
    if dist.is_initialized():
        try:
            if not failed:
                dist.barrier()
        finally:
            try:
                dist.destroy_process_group()
            except Exception:  # the group of a failed job: nothing left to tear down cleanly
                if not failed:
                    raise


def peer_failure(error: BaseException) -> str | None:
    """Why a collective failed when another process of the job stopped (killed, out of memory, a
    failure of its own), in a line; None for any other error."""
    if not launched():  # (the group itself is already left by then)
        return None
    text = str(error)
    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    known = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL", "gloo", "Timed out", "timed out")
    if (kinds and isinstance(error, kinds)) or (isinstance(error, RuntimeError) and any(word in text for word in known)):
        for word in known:
            if word in text:
                return word.lower()
        return text.splitlines()[0][:120] if text else type(error).__name__
    return None
