"""Generate the Python code of the protos in shared/proto/ (committed; `--check` compares).

    .venv/bin/python scripts/gen_protos.py            # rewrite shared/proto/**/*_pb2*.py(i)
    .venv/bin/python scripts/gen_protos.py --check    # exit 1 if the committed code is stale

The generated modules are committed so that installing the agent needs no protoc; the test
suite (tests/grpc/test_protos.py) runs the check, as wasm_plugins/check.sh does for the plugins.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "shared" / "proto"
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def protos() -> list[Path]:
    """Every .proto file under shared/proto, relative to the repository root."""
    return sorted(p.relative_to(ROOT) for p in PROTO_DIR.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) on every proto into ``out``; the generated paths, relative."""
    from grpc_tools import protoc  # dev extra: grpcio-tools

    files = [str(p) for p in protos()]
    args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}"]
    args += [f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.name.endswith(SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if not args.check:
            for rel in fresh:
                (ROOT / rel).write_bytes((Path(tmp) / rel).read_bytes())
            print(f"wrote {len(fresh)} files under {PROTO_DIR.relative_to(ROOT)}")
            return 0
        committed = sorted(
            p.relative_to(ROOT) for p in PROTO_DIR.rglob("*") if p.name.endswith(SUFFIXES)
        )
        stale = [
            str(rel)
            for rel in fresh
            if not (ROOT / rel).exists() or not filecmp.cmp(Path(tmp) / rel, ROOT / rel, False)
        ]
        extra = [str(rel) for rel in committed if rel not in fresh]
    if stale or extra:
        print(
            f"generated proto code is stale: {', '.join(stale + extra)}; "
            "run: .venv/bin/python scripts/gen_protos.py",
            file=sys.stderr,
        )
        return 1
    print("generated proto code matches shared/proto/*.proto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
