"""compose.yaml passes the Compose specification's schema and runs what the local stack runs;
the Dockerfiles build from the lock file in two stages and say how to check their health."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aigis.devstack.kafka_dist import kafka_version

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCKERFILES = sorted(DEPLOY.glob("docker/*.Dockerfile"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_compose_passes_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(compose))
    assert not errors, [(e.message, list(e.path)) for e in errors]
    broken = {**compose, "services": {"x": {"image": "a", "helthcheck": {}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken)), "the schema is strict"


def test_compose_runs_the_kafka_of_the_local_stack(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_every_long_running_service_checks_its_health(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        if check.get("disable"):
            assert service.get("restart") == "on-failure", f"{name} is not a one-shot job"
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"].startswith("service_"), (name, dependency)


def test_the_workers_check_the_loop_not_the_port(compose: dict[str, Any]) -> None:
    for name in ("worker", "sink"):
        assert "/healthz" in " ".join(compose["services"][name]["healthcheck"]["test"])


def test_redis_has_a_password_a_memory_cap_and_an_eviction_policy(
    compose: dict[str, Any],
) -> None:
    redis = compose["services"]["redis"]
    options = dict(zip(redis["command"][1::2], redis["command"][2::2], strict=False))
    assert options["--requirepass"]
    assert re.fullmatch(r"\d+[kmg]b", options["--maxmemory"])
    # Verdicts carry a TTL and are evicted; the cache namespace key has none and is kept.
    assert options["--maxmemory-policy"] == "volatile-lru"
    env = compose["x-aigis-env"]
    assert env["AIGIS_REDIS__PASSWORD"] == options["--requirepass"]


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        tag = service["image"].rsplit(":", 1)
        assert len(tag) == 2, f"{name}: {service['image']} has no tag"
        assert tag[1] not in ("latest", "7", "7-alpine"), f"{name}: {service['image']}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_build_from_the_lock_in_two_stages(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2, "a build stage and a run stage"
    assert all(s.startswith("python:3.11.") and s.endswith("-bookworm") for s in stages), stages
    installs = re.findall(r"uv sync ([^\n\\]*)", text)
    assert installs, "installs with uv"
    assert all("--frozen" in i for i in installs), "only the versions of uv.lock"
    final = text[text.rindex("\nFROM ") :]
    runs = re.findall(r"^RUN .*", final, re.MULTILINE)
    assert not any("uv" in run.split() for run in runs), "no uv in the image that runs"
    assert "COPY --from=build /opt/aigis/.venv" in final
    assert re.search(r"^USER 10001$", final, re.MULTILINE), "runs unprivileged"
    assert re.search(r"^HEALTHCHECK ", final, re.MULTILINE), "says how to check its health"
