"""One variant of ``bench_inference.py --compare``: a warm model that times a clip on request.

Run by the benchmark with ``PYTHONPATH`` set to the tree under test (the current checkout or a git
worktree of the reference commit), so that each variant imports its own ``basicvsr_archival``.
Only ``init_model`` of that tree is used (with ``backend=`` where its signature has one).

Protocol (one JSON object a line on stdout): after building the model, loading ``--state`` and
``--input`` (written by the parent, so every variant computes the same thing) and one warm-up run,
it prints ``{"ready": ...}``; then each ``run`` line on stdin times one forward pass of the whole
clip and answers ``{"seconds": ...}``; ``save PATH`` writes the last output there; ``quit`` ends it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time


def main() -> None:
    """Build the variant's model, warm it up, then serve ``run`` / ``save`` / ``quit`` requests."""
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="config file of the tree under test")
    p.add_argument("--state", required=True, help="state dict (.pt) shared by all variants")
    p.add_argument("--input", required=True, help="clip (.pt) of shape (1, t, 3, h, w)")
    p.add_argument("--backend", default=None, help="init_model backend; none: the tree's default path")
    p.add_argument(
        "--fallback",
        action="store_true",
        help="without a 'backend' argument: the default path, not 'unavailable'",
    )
    p.add_argument("--mid-channels", type=int, default=64)
    p.add_argument("--num-blocks", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    import torch
    from mmengine.config import Config

    from basicvsr_archival.apis import init_model

    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs, used = {}, "default path"
    if args.backend is not None and "backend" in inspect.signature(init_model).parameters:
        kwargs["backend"] = used = args.backend
    elif args.backend is not None and not args.fallback:
        print(json.dumps({"unavailable": "init_model of this tree has no 'backend' argument"}), flush=True)
        return
    cfg = Config.fromfile(args.config)
    cfg.model.generator.mid_channels = args.mid_channels
    cfg.model.generator.num_blocks = args.num_blocks
    model = init_model(cfg, None, "cpu", **kwargs)
    model.load_state_dict(torch.load(args.state))
    lq = torch.load(args.input)
    with torch.inference_mode():
        out = model(lq, mode="tensor")  # warm-up: kernels built and loaded, allocator primed
        package = sys.modules["basicvsr_archival"].__file__
        info = {"ready": True, "backend": used, "package": package, "threads": torch.get_num_threads()}
        print(json.dumps(info), flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "run":
                start = time.perf_counter()
                out = model(lq, mode="tensor")
                print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
            elif cmd == "save":
                torch.save(out.float().contiguous(), arg)
                print(json.dumps({"saved": arg}), flush=True)
            elif cmd == "quit":
                return


if __name__ == "__main__":
    main()
