"""Render a Kustomize overlay offline, for the subset of Kustomize that deploy/k8s uses.

Kustomize itself is a Go program that no Python package ships, so the tests render the overlays
with this: ``resources`` (files, and directories holding a ``kustomization.yaml``),
``namespace``, ``images`` (``newName``, ``newTag``, ``digest``) and ``patches`` given by
``path`` (strategic-merge patches naming their target by kind and name). Anything else in a
kustomization is refused rather than ignored, so a feature added to an overlay fails the tests
until it is rendered here too. Where ``kubectl`` is installed, a test checks that this renders
exactly what ``kubectl kustomize`` does.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = frozenset({"apiVersion", "kind", "resources", "namespace", "images", "patches"})

_MERGE_KEYS = ("name", "mountPath", "containerPort", "port")
"""Keys that identify the items of a list in a strategic-merge patch (Kubernetes' own merge keys
for containers, env, volumes, volumeMounts and ports)."""

# Kinds whose lists Kustomize merges by key; for custom resources it replaces lists whole.
_BUILTIN_GROUPS = ("v1", "apps/", "batch/", "policy/", "networking.k8s.io/")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects that ``kustomize build directory`` would print (in resource order)."""
    spec = documents(directory / "kustomization.yaml")[0]
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: fields this renderer lacks: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else documents(path)
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only patches given by path are rendered: {patch}")
        for doc in documents(directory / patch["path"]):
            _apply(objects, doc)
    for obj in objects:
        if "namespace" in spec:
            obj["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            _retag(obj, image)
    return objects


def _apply(objects: list[dict[str, Any]], patch: dict[str, Any]) -> None:
    targets = [
        o
        for o in objects
        if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]
    ]
    if len(targets) != 1:
        raise ValueError(f"patch {patch['kind']}/{patch['metadata']['name']} matches {targets}")
    [target] = targets
    builtin = target["apiVersion"].startswith(_BUILTIN_GROUPS)
    merged = _merge(target, patch, by_key=builtin)
    target.clear()
    target.update(merged)


def _merge(base: Any, patch: Any, *, by_key: bool) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value, by_key=by_key) if key in base else deepcopy(value)
        return out
    if by_key and isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(base + patch)
        if key is not None:
            out = [deepcopy(item) for item in base]
            for item in patch:
                index = next((i for i, b in enumerate(out) if b[key] == item[key]), None)
                if index is None:
                    out.append(deepcopy(item))
                else:
                    out[index] = _merge(out[index], item, by_key=by_key)
            return out
    return deepcopy(patch)


def _merge_key(items: list[Any]) -> str | None:
    for key in _MERGE_KEYS:
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def _retag(node: Any, image: dict[str, str]) -> None:
    if isinstance(node, dict):
        current = node.get("image")
        if isinstance(current, str) and current.split("@")[0].split(":")[0] == image["name"]:
            name = image.get("newName", image["name"])
            if "digest" in image:
                node["image"] = f"{name}@{image['digest']}"
            else:
                tag = image.get("newTag", current.partition(":")[2])
                node["image"] = f"{name}:{tag}" if tag else name
        for value in node.values():
            _retag(value, image)
    elif isinstance(node, list):
        for value in node:
            _retag(value, image)
