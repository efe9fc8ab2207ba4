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
import subprocess
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
    """Compile the proto; replace ``out`` with the result. Raises RuntimeError when no compiler can.

    The compiler is grpc_tools.protoc (the build requirement). Where that is missing or
    too old for the proto (Debian 12's python3-grpc-tools 1.14 predates proto3
    ``optional``), the system's protoc with grpc_python_plugin is used instead (Debian:
    protobuf-compiler, protobuf-compiler-grpc): it emits code for the system's own
    python3-protobuf and python3-grpcio.
    """
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, compiler in enumerate((_grpc_tools_protoc, _system_protoc)):
            target = Path(tmp) / str(number)
            target.mkdir()
            error = compiler(root, target)
            if error is None:
                break
            errors.append(error)
        else:
            raise RuntimeError(f"cannot compile {PROTO}: " + "; ".join(errors))
        produced = target / PACKAGE_DIR
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for path in sorted(produced.iterdir()):
            shutil.copy2(path, out / path.name)
        (out / "__init__.py").write_text(INIT_TEXT)


def _arguments(root: Path, target: Path) -> list[str]:
    # Map the proto under the package path so that the generated modules import each
    # other as memsched.facade._generated.memory_scheduler_pb2 (not as a top-level module).
    return [
        f"--proto_path={PACKAGE_DIR}={root / 'proto'}",
        f"--python_out={target}",
        f"--pyi_out={target}",
        f"--grpc_python_out={target}",
        f"{PACKAGE_DIR}/memory_scheduler.proto",
    ]


def _grpc_tools_protoc(root: Path, target: Path) -> str | None:
    """Run grpc_tools.protoc; return None on success, else what went wrong."""
    try:
        from grpc_tools import protoc
    except ImportError:
        return "grpcio-tools is not installed (it is in [build-system] requires)"
    code = protoc.main(["grpc_tools.protoc", *_arguments(root, target)])
    return None if code == 0 else f"grpc_tools.protoc exited {code} (see above; too old for proto3 optional?)"


def _system_protoc(root: Path, target: Path) -> str | None:
    """Run the system's protoc with grpc_python_plugin; return None on success, else what went wrong."""
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        return "no system protoc with grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc)"
    proc = subprocess.run(
        [protoc, f"--plugin=protoc-gen-grpc_python={plugin}", *_arguments(root, target)], capture_output=True, text=True
    )
    return None if proc.returncode == 0 else f"{protoc} exited {proc.returncode}: {proc.stderr.strip()}"


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
