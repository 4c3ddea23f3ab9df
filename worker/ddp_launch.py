"""`python -m worker.ddp_launch <torchrun arguments>`: torchrun that dies with the pool
process that started it (kill -9 of the worker leaves no launcher, so no rank, behind)."""

import os
import sys

from worker.pdeathsig import die_with_parent


def main() -> None:
    die_with_parent(int(os.environ.get("TUNESERVE_LAUNCHER_PARENT", "0")) or None)
    os.environ["TUNESERVE_LAUNCHER_PID"] = str(os.getpid())  # the ranks' parent
    from torch.distributed.run import main as torchrun

    torchrun(sys.argv[1:])


if __name__ == "__main__":
    main()
