"""The root Dockerfile: hadolint-clean, plus the rules this project relies on."""

from __future__ import annotations

import re
import shlex

from tests.deploy._support import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def test_hadolint_finds_nothing() -> None:
    done = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_images_are_python_311_slim_with_a_pinned_tag() -> None:
    args = build_args()
    images = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image)
            images.append(image)
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python" and tag.startswith("3.11-slim"), image
        assert tag != "latest"


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user


def test_installs_the_package_with_the_constraints_file() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert re.search(r"pip install (--\S+ )*-c constraints\.txt \.", runs), runs


def test_healthcheck_expose_and_default_command() -> None:
    final = dict(stages()[-1])
    assert "python" in final["HEALTHCHECK"] and "urllib" in final["HEALTHCHECK"]
    exposed: set[int] = set()
    for item in final["EXPOSE"].split():
        low, _, high = item.split("/")[0].partition("-")
        exposed.update(range(int(low), int(high or low) + 1))
    assert {8001, 8002, 8003, 8004, 8005} <= exposed
    assert final["CMD"] == '["leadflow", "serve", "capture"]'


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, rest in instructions():
        if keyword not in ("ENV", "ARG"):
            continue
        for token in shlex.split(rest):
            name = token.split("=", 1)[0].upper()
            assert not re.search(r"SECRET|PASSWORD|TOKEN|API_KEY|DATABASE_URL", name), token


def test_everything_copied_exists_and_passes_the_dockerignore() -> None:
    ignore = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore should allow-list the build context"
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = shlex.split(rest)
        for source in sources:
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
