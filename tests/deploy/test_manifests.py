"""The deployment files parse, and every setting they pass is one the code reads.

Schemas and policies of the rendered overlays: test_k8s_policy.py; compose and images:
test_compose.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
from pydantic import BaseModel

from aigis.cli import app
from schemas.settings import Settings
from tests.deploy.kustomize import documents, render

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = sorted(p.parent for p in DEPLOY.glob("k8s/overlays/*/kustomization.yaml"))
MANIFESTS = sorted(
    [
        *(p for p in DEPLOY.glob("k8s/**/*.yaml") if p.name != "kustomization.yaml"),
        DEPLOY / "compose.yaml",
    ]
)


def setting_env_names(model: type[BaseModel] = Settings, prefix: str = "AIGIS_") -> set[str]:
    """Every environment variable the settings object reads."""
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def env_names(node: Any) -> Iterator[str]:
    """AIGIS_* names anywhere in a parsed YAML document: keys, `name:` entries and strings."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("AIGIS_"):
                yield key
            if key == "name" and isinstance(value, str) and value.startswith("AIGIS_"):
                yield value
            yield from env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from env_names(item)
    elif isinstance(node, str):
        yield from re.findall(r"\bAIGIS_[A-Z0-9_]+", node)


def test_there_are_dev_and_prod_overlays() -> None:
    assert [o.name for o in OVERLAYS] == ["dev", "prod"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_overlay_has_manifests_for_every_part(overlay: Path) -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in render(overlay)}
    for expected in [
        ("StatefulSet", "aigis-worker"),
        ("Deployment", "torchserve"),
        ("Deployment", "aigis-sink"),
        ("CronJob", "aigis-retrain"),
        ("ConfigMap", "aigis-settings"),
        ("Secret", "aigis-secrets"),
        ("ScaledObject", "aigis-worker"),
        ("TriggerAuthentication", "aigis-kafka"),
        ("ServiceMonitor", "aigis-worker"),
        ("NetworkPolicy", "torchserve"),
    ]:
        assert expected in kinds
    assert (DEPLOY / "docker" / "worker.Dockerfile").is_file()
    assert (DEPLOY / "docker" / "torchserve.Dockerfile").is_file()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_parses_and_uses_known_settings(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no document"
    known = setting_env_names()
    unknown = sorted({name for doc in docs for name in env_names(doc)} - known)
    assert not unknown, f"{path.name} sets variables no code reads: {unknown}"


def command_exists(argv: list[str]) -> bool:
    """True when ``aigis <argv>`` names a real command and only options it declares."""
    command: Any = typer.main.get_command(app)
    words = iter(argv)
    for word in words:
        if word.startswith("-"):
            options = {opt: param for param in command.params for opt in param.opts}
            param = options.get(word.split("=")[0])
            if param is None:
                return False
            if not getattr(param, "is_flag", False) and "=" not in word:
                next(words, None)  # the option's value
            continue
        commands = getattr(command, "commands", None)
        if commands is None:
            positional = [p for p in command.params if isinstance(p, click.Argument)]
            if not positional:
                return False  # a stray word after a command that takes no arguments
            continue
        if word not in commands:
            return False
        command = commands[word]
    return True


def entrypoint(dockerfile: Path) -> list[str]:
    match = re.search(r"^ENTRYPOINT \[(.*)\]", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.name} has no exec-form ENTRYPOINT"
    argv = [part.strip().strip('"') for part in match.group(1).split(",")]
    assert argv[0] == "aigis", f"{dockerfile.name} does not run aigis"
    return argv[1:]


def image_entrypoint(image: str) -> list[str]:
    """What ``aigis-NAME:tag`` runs before a pod's ``args`` (its Dockerfile's ENTRYPOINT)."""
    name = image.split(":")[0].removeprefix("aigis-")
    return entrypoint(DEPLOY / "docker" / f"{name}.Dockerfile")


def container_commands() -> Iterator[tuple[str, list[str]]]:
    for path in MANIFESTS:
        for doc in documents(path):
            for node in _walk(doc):
                if not isinstance(node, dict):
                    continue
                command, args = node.get("command"), node.get("args")
                if not str(node.get("image", "aigis-")).startswith("aigis-"):
                    continue  # Kafka, Redis, Prometheus, Grafana: not ours
                if isinstance(command, list) and command and command[0] != "aigis":
                    yield path.name, command  # compose: arguments to the image's aigis
                    continue
                if isinstance(command, list) and command:
                    yield path.name, [*command[1:], *(args or [])]  # overrides the ENTRYPOINT
                elif isinstance(args, list) and isinstance(node.get("image"), str):
                    yield path.name, [*image_entrypoint(node["image"]), *args]
    for dockerfile in DEPLOY.glob("docker/*.Dockerfile"):
        yield dockerfile.name, entrypoint(dockerfile)


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_containers_run_commands_that_exist() -> None:
    seen = list(container_commands())
    assert seen
    missing = [(where, argv) for where, argv in seen if not command_exists(argv)]
    assert not missing, f"containers run unknown aigis commands: {missing}"


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_worker_memory_limit_holds_a_full_batch_and_its_outputs(overlay: Path) -> None:
    docs = render(overlay)
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    budget_mib = int(config["data"]["AIGIS_WORKER__MAX_BATCH_BYTES"]) / 2**20
    containers = [
        c
        for doc in docs
        if doc["kind"] == "StatefulSet"
        for c in doc["spec"]["template"]["spec"]["containers"]
    ]
    [worker] = [c for c in containers if c["name"] == "worker"]
    limit_mib = _mebibytes(worker["resources"]["limits"]["memory"])
    # The batch, its outputs (review items repeat the image) and the process itself (~0.5 GiB).
    assert limit_mib >= 4 * budget_mib + 512
