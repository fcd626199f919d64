"""The Kafka broker's jars: fetched once from Maven Central into the cache directory.

``deploy/kafka/pom.xml`` lists them and sets the version; Maven copies them (with a logging
backend) into ``<cache_dir>/kafka-<version>/libs``, which every state directory then shares.
Maven's own repository lives under ``<cache_dir>/maven`` so one setting says where downloads go.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import structlog

from aigis.devstack.errors import DevStackError
from aigis.devstack.service import require_template
from schemas.settings import Settings

log = structlog.get_logger(__name__)

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE = ".complete"
_MIN_JAVA = 17


def pom_path() -> Path:
    return require_template("kafka/pom.xml")


def kafka_version() -> str:
    """The broker version that ``deploy/kafka/pom.xml`` pins."""
    node = ET.parse(pom_path()).find("m:properties/m:kafka.version", _POM_NS)  # noqa: S314
    if node is None or not (node.text or "").strip():
        raise DevStackError(f"{pom_path()} sets no <kafka.version> property")
    return (node.text or "").strip()


def libs_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{kafka_version()}" / "libs"


def ensure_jars(settings: Settings) -> Path:
    """Return the directory of the broker's jars, downloading them first if they are missing.

    The download goes to a temporary directory renamed into place at the end, so an interrupted
    download is never mistaken for a complete one.
    """
    libs = libs_dir(settings)
    if (libs / _COMPLETE).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevStackError(
            f"Kafka's jars are not in {libs} and Maven is not installed to fetch them; install it "
            "(apt-get install -y maven) or copy the jars of deploy/kafka/pom.xml there"
        )
    staging = libs.with_name(f"libs.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("kafka_jars_download", version=kafka_version(), into=str(libs))
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom_path()),
        f"-Dmaven.repo.local={settings.cache_dir / 'maven'}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(staging.glob("kafka_*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise DevStackError(
            f"Maven could not fetch Kafka {kafka_version()} from Maven Central "
            f"(exit {done.returncode}); check the network or proxy settings and retry.\n{output}"
        )
    (staging / _COMPLETE).touch()
    shutil.rmtree(libs, ignore_errors=True)
    staging.replace(libs)
    return libs


def java() -> str:
    """The ``java`` executable, checked to be recent enough for the broker."""
    path = shutil.which("java")
    if path is None:
        raise DevStackError(
            f"`java` is not on PATH; Kafka {kafka_version()} needs Java {_MIN_JAVA} or newer "
            "(apt-get install -y openjdk-17-jre-headless)"
        )
    done = subprocess.run([path, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', done.stderr + done.stdout)
    if match is None or int(match.group(1)) < _MIN_JAVA:
        found = match.group(1) if match else "unknown"
        raise DevStackError(
            f"{path} is Java {found}; Kafka {kafka_version()} needs Java {_MIN_JAVA} or newer"
        )
    return path
