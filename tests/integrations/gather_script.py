"""One rank of a 2-process gloo gather of extended verdicts (launched by test_verdict_schema.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parents[1]))
from verdict_ext import ExtVerdict, make_verdict  # noqa: E402

from safegen_guard.integrations._gather import gather_verdicts  # noqa: E402


def main(rank: int, world: int, port: str, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)

    def all_gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        return torch.stack(parts)

    v = make_verdict(3, 0.0) if rank == 0 else make_verdict(2, 5.0)  # uneven ranks
    x = torch.full((len(v), 1, 8, 8), float(rank))
    _, verdict, ranks, errors = gather_verdicts(all_gather, x, v, rank + 1, verdict_cls=ExtVerdict)
    dist.destroy_process_group()
    result = {
        "records": verdict.to_records(),
        "ranks": ranks,
        "errors": errors,
        "maps": {n: float(getattr(verdict, n).sum()) for n in ("gradcam", "heatmap", "edges")},
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
