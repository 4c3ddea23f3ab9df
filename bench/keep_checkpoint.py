"""What keeping an epoch's weights costs: hard links of a checkpoint's loadable files (as the
training callback does) next to a full copy of the checkpoint, in one run.

    HF_HUB_OFFLINE=1 python bench/keep_checkpoint.py --repeats 20

The checkpoint is all-MiniLM-L6-v2 with a 2-label head, plus an optimizer state of twice the
weights' size (as a Trainer checkpoint has, and which is not kept). Prints the median times.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.models.files import link_model_files  # noqa: E402
from bench.predict_bench import build_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "checkpoint-1"
        build_model(checkpoint)
        weights = (checkpoint / "model.safetensors").stat().st_size
        (checkpoint / "optimizer.pt").write_bytes(b"\0" * (2 * weights))
        links, copies = [], []
        for i in range(args.repeats):
            started = time.perf_counter()
            size = link_model_files(checkpoint, Path(tmp) / f"kept-{i}")
            links.append(time.perf_counter() - started)
            started = time.perf_counter()
            shutil.copytree(checkpoint, Path(tmp) / f"copy-{i}")
            copies.append(time.perf_counter() - started)
            shutil.rmtree(Path(tmp) / f"copy-{i}")
    print(f"model files kept: {size / 1e6:.1f} MB")
    print(f"keep (hard links), median: {statistics.median(links) * 1000:.2f} ms")
    print(f"full copy of the checkpoint, median: {statistics.median(copies) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
