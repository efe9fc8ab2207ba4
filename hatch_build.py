"""Hatch build hook: compile proto/memory_scheduler.proto into memsched/facade/_generated/.

The generated modules are build output: never edited, never committed (the
directory is gitignored). Every wheel build, editable or not, regenerates them
with the grpcio-tools of the build environment (pinned in [build-system]); the
hook then checks that the code it produced will import with the runtime the
package depends on (protobuf and grpcio versions in [project] dependencies), so
a newer protoc can never ship code the installed runtime refuses.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTO = "proto/memory_scheduler.proto"
PACKAGE_DIR = "memsched/facade/_generated"
INIT_TEXT = '"""Generated from proto/memory_scheduler.proto at build time by hatch_build.py. Do not edit."""\n'


class ProtoBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Generate the gRPC modules for wheel builds (standard and editable); sdists ship the .proto only."""
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        out = root / PACKAGE_DIR
        generate(root, out)
        check_runtime_compatible(out, self.metadata.core.dependencies)
        # The directory is gitignored, which hatch honours: include it explicitly.
        build_data["artifacts"].append(f"/{PACKAGE_DIR}/*.py")
        build_data["artifacts"].append(f"/{PACKAGE_DIR}/*.pyi")


def generate(root: Path, out: Path) -> None:
    """Run grpc_tools.protoc on the proto; replace ``out`` with the result. Raises RuntimeError on failure."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - the build requirements install it
        raise RuntimeError("grpcio-tools is needed to build memsched (it is in [build-system] requires)") from exc
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        # Map the proto under the package path so that the generated modules import each
        # other as memsched.facade._generated.memory_scheduler_pb2 (not as a top-level module).
        virtual = f"{PACKAGE_DIR}/memory_scheduler.proto"
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PACKAGE_DIR}={root / 'proto'}",
            f"--proto_path={include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            virtual,
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed (exit {code}) on {PROTO}")
        produced = Path(tmp) / PACKAGE_DIR
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for path in sorted(produced.iterdir()):
            shutil.copy2(path, out / path.name)
        (out / "__init__.py").write_text(INIT_TEXT)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def check_runtime_compatible(out: Path, dependencies: list[str]) -> None:
    """Raise RuntimeError when the generated code needs a newer protobuf/grpcio than the dependencies allow."""
    from packaging.requirements import Requirement

    pb2 = (out / "memory_scheduler_pb2.py").read_text()
    grpc_mod = (out / "memory_scheduler_pb2_grpc.py").read_text()
    gencode = re.search(r"# Protobuf Python Version: ([\d.]+)", pb2)
    grpc_gen = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_mod)
    floors: dict[str, tuple[int, ...]] = {}
    ceilings: dict[str, tuple[int, ...]] = {}
    for dep in dependencies:
        req = Requirement(dep)
        for spec in req.specifier:
            if spec.operator in (">=", "==", "~="):
                floors[req.name] = _version(spec.version)
            if spec.operator == "<":
                ceilings[req.name] = _version(spec.version)
    problems = []
    if gencode:
        need = _version(gencode.group(1))
        if floors.get("protobuf", (0,)) < need:
            problems.append(f"the generated code needs protobuf>={gencode.group(1)}, the dependencies allow older")
        if "protobuf" in ceilings and ceilings["protobuf"][0] <= need[0]:
            problems.append(f"the generated code is protobuf {need[0]}.x, the dependencies stop below {ceilings['protobuf']}")
    if grpc_gen and floors.get("grpcio", (0,)) < _version(grpc_gen.group(1)):
        problems.append(f"the generated code needs grpcio>={grpc_gen.group(1)}, the dependencies allow older")
    if problems:
        raise RuntimeError(
            "memsched build: grpcio-tools produced code the declared runtime may not import: "
            + "; ".join(problems)
            + " (align [build-system] requires with [project] dependencies in pyproject.toml)"
        )
