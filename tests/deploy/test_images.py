"""deploy/docker: one multi-stage non-root image per service, from uv.lock, via `make images`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
# image name -> service directory
SERVICES = {
    "gateway": "marketplace-gateway",
    "complaints": "complaints",
    "mediation": "mediation",
    "notifications": "notifications",
}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    split: list[list[tuple[str, str]]] = []
    for instruction in instructions(dockerfile):
        if instruction[0] == "FROM":
            split.append([])
        if split:
            split[-1].append(instruction)
    return split


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_built_from_the_lock_in_a_builder_stage(service):
    dockerfile = DOCKER / f"{service}.Dockerfile"
    builder, runtime = stages(dockerfile)
    assert builder[0][1].endswith("AS builder")
    assert runtime[0][1].endswith("AS runtime")
    syncs = [args for word, args in builder if word == "RUN" and "uv sync" in args]
    assert syncs, "dependencies come from uv sync"
    for args in syncs:
        assert "--frozen" in args, "exactly the lock, never a re-resolution"
        assert "--no-dev" in args, "no dev tools in an image"
        assert f"--package odr-{service}" in args
    # Every path copied into the build exists, so the build cannot silently miss a file.
    for word, args in builder:
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} is missing"
    directory = SERVICES[service]
    copied = " ".join(args for word, args in builder if word == "COPY")
    for needed in ("uv.lock", "alembic.ini", "migrations", f"services/{directory}/src"):
        assert needed in copied, f"{dockerfile.name} does not copy {needed}"


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_the_non_root_user_the_pods_expect(service):
    dockerfile = DOCKER / f"{service}.Dockerfile"
    _builder, runtime = stages(dockerfile)
    users = [args for word, args in runtime if word == "USER"]
    assert users == ["10001:10001"]
    assert any(word == "COPY" and args.startswith("--from=builder") for word, args in runtime)
    assert not any(word == "RUN" and "uv " in args for word, args in runtime), "no uv at runtime"
    scripts = tomllib.loads((ROOT / "services" / SERVICES[service] / "pyproject.toml").read_text())
    (cmd,) = [args for word, args in runtime if word == "CMD"]
    assert cmd == f'["{service}-api"]'
    assert f"{service}-api" in scripts["project"]["scripts"]


def test_build_context_leaves_out_the_local_environment():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", "var"):
        assert path in ignored


def test_make_images_fails_clearly_without_a_container_tool(tmp_path):
    # No docker or podman on PATH: the target says so and fails, rather than half-building.
    make = shutil.which("make")
    assert make, "make is required"
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        [make, "-C", str(ROOT), "images", "CONTAINER_TOOL="],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "needs docker or podman" in result.stderr


def test_overlays_run_the_images_make_images_builds(rendered):
    # `make images` tags odr/<service>:$(IMAGE_TAG) (default dev), optionally under a registry.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^IMAGE_TAG \?= dev$", makefile, re.MULTILINE)
    for overlay, docs in rendered.items():
        images = {
            c["image"]
            for d in docs
            if d["kind"] in ("Deployment", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        names = {re.sub(r"^.*?(odr/[a-z]+):[\w.-]+$", r"\1", i) for i in images}
        assert names == {f"odr/{s}" for s in SERVICES}, overlay
        assert len({i.rsplit(":", 1)[1] for i in images}) == 1, f"{overlay}: one release tag"
        if overlay == "dev":
            assert images == {f"odr/{s}:dev" for s in SERVICES}
