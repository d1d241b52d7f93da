"""A change on the bridge's own path, priced: the no-op model through this checkout and through another one.

    git worktree add /tmp/before main                       # the version to compare with
    .venv-bench/bin/python benchmarks/before_after.py /tmp/before [--rounds 3] [--clients 1,8,32]

Both versions serve benchmarks/run.py's no-op model on `/v7/infer` as shipped (`bridge serve`, a line per
request), beside the bare FastAPI endpoint run.py compares them with, all started at once and measured in
interleaved rounds of wrk runs, so a busy machine slows them alike. The other checkout is imported first
(`PYTHONPATH`) with this venv's packages. Prints answers per second (2xx only) and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import BIN, bare_fastapi, bridge, jpeg, noop_manifest, settle, v7_body, wrk  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="length of one wrk run")
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    before = args.before.resolve()
    if not (before / "bridge").is_dir():
        sys.exit(f"{before} is not a checkout of this project")
    folder = Path(tempfile.mkdtemp(prefix="bridge-before-after-"))
    body = folder / "v7-64.json"
    body.write_bytes(v7_body(jpeg(64)))
    noop = str(noop_manifest(folder))
    targets = [bare_fastapi(), bridge("before", noop), bridge("after", noop)]
    targets[1].env["PYTHONPATH"] = str(before)
    imported = subprocess.run([str(BIN / "python"), "-c", "import bridge; print(bridge.__file__)"], text=True,
                              capture_output=True, env={"PYTHONPATH": str(before)}, cwd=folder).stdout.strip()
    if not imported.startswith(str(before)):
        sys.exit(f"the other checkout's bridge is not the one imported ({imported})")
    rates: dict[tuple[int, str], list[float]] = {}
    clients = [int(c) for c in args.clients.split(",")]
    try:
        for target in targets:
            target.start(folder)
        for target in targets:
            target.wait("/v7/infer", body.read_bytes())
        for _ in range(args.rounds):
            for c in clients:
                for target in targets:
                    result = wrk(target, "/v7/infer", body, c, args.seconds, folder)
                    rates.setdefault((c, target.name), []).append(result["rps"])
                    if result["non2xx"] or result["errors"]:
                        print(f"{target.name}, {c} clients: {result['non2xx']} non-2xx, {result['errors']} errors")
                    settle(target)
    finally:
        for target in targets:
            target.stop()
    for c in clients:
        rate = {t.name: statistics.median(rates[(c, t.name)]) for t in targets}
        bare = rate["bare FastAPI"]
        print(f"{c:>3} clients: " + ", ".join(f"{name} {r:,.0f}/s" for name, r in rate.items())
              + f" | after/before {rate['after'] / rate['before']:.2f}, before/bare {rate['before'] / bare:.2f},"
              f" after/bare {rate['after'] / bare:.2f}")


if __name__ == "__main__":
    main()
