"""Run `vlmt` several times in the same torchrun processes, e.g. a run and then its resume:

    python -m torch.distributed.run --nproc_per_node 2 tests/training/torchrun_legs.py \\
        train CFG --out RUN --set train.max_iters=3 --then train CFG --out RUN --resume ...

The first leg's trainer starts the process group and the later legs use it, as the cells of
`vlmt search-layers` do under torchrun; the processes meet at a barrier between legs. A leg
starts from the checkpoint on disk, with generators reseeded by the trainer, as a new process
would. This saves the start-up of a second torchrun (about 10 s on a busy 2-core machine).
"""

from __future__ import annotations

import sys

import torch.distributed as dist

from vlmt import cli


def main(argv: list[str]) -> int:
    legs: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--then":
            legs.append([])
        else:
            legs[-1].append(arg)
    for leg in legs:
        code = cli.main(leg)
        if code:
            return code
        dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
