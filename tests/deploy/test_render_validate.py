"""Every overlay renders, and every rendered object validates strictly and offline.

Built-in kinds go through ``kubernetes-validate`` (strict: unknown fields fail) for the oldest
and the newest Kubernetes we support. Custom resources have no schema there; each kind we use
is validated against its vendored CRD instead (tests/deploy/data, see SOURCES.md).
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import DATA, OVERLAYS, find, kind_name, render

#: Kubernetes versions the manifests must validate for (1.31 is the oldest we support).
K8S_VERSIONS = ("1.31.0", "1.34.0")

#: Kinds kubernetes-validate has no schema for: only custom resources belong here, each with
#: the vendored CRD it is validated against instead (see test_skip_list_holds_only_crds).
CRD_SCHEMAS: dict[tuple[str, str], Path] = {
    ("keda.sh/v1alpha1", "ScaledObject"): DATA / "keda.sh_scaledobjects.yaml",
}

VENDORED_SHA256 = {
    "compose-spec.json": "73ca5878c77570ba222a558016c7b3c6770ba5f3377786593e32180666512f8f",
    "keda.sh_scaledobjects.yaml": "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
}


def _kubernetes_validate() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import kubernetes_validate
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed; install it with "
            "`.venv/bin/pip install 'kubernetes-validate>=1.31'` (part of the dev extra; "
            "./scripts/setup.sh installs it)",
            pytrace=False,
        )
    return kubernetes_validate


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_objects_in_its_namespace(overlay: str) -> None:
    objects = render(overlay)
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert len(namespaces) == 1, f"{overlay}: one namespace expected, got {namespaces}"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespaces[0], kind_name(obj)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_strictly(overlay: str, version: str) -> None:
    kv = _kubernetes_validate()
    failures = []
    for obj in render(overlay):
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            failures.append(f"{kind_name(obj)}: {path}: {exc.message}")
        except kv.SchemaNotFoundError:
            failures.append(
                f"{kind_name(obj)}: no schema for {obj['apiVersion']} {obj['kind']}; a custom "
                "resource needs its CRD in CRD_SCHEMAS"
            )
    assert not failures, "\n".join(failures)


def _crd_schema(path: Path, api_version: str) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    version = api_version.split("/")[1]
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: dict[str, Any] = _strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
            return schema
    raise AssertionError(f"{path.name} has no version {version}")


def _strict(schema: Any) -> Any:
    """Refuse unknown fields, as the API server's strict field validation does for CRs."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for item in schema:
            _strict(item)
    return schema


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_crds(overlay: str) -> None:
    for obj in render(overlay):
        key = (obj["apiVersion"], obj["kind"])
        if key not in CRD_SCHEMAS:
            continue
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        try:
            jsonschema.Draft7Validator(_crd_schema(CRD_SCHEMAS[key], obj["apiVersion"])).validate(
                body
            )
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{kind_name(obj)}: {path}: {exc.message}", pytrace=False)


def test_strict_crd_schema_refuses_an_unknown_field() -> None:
    schema = _crd_schema(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")], "keda.sh/v1alpha1")
    good: dict[str, Any] = {
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "cpu", "metadata": {}}]}
    }
    jsonschema.Draft7Validator(schema).validate(good)
    bad = copy.deepcopy(good)
    bad["spec"]["minReplicas"] = 2  # the HPA's spelling, not KEDA's minReplicaCount
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_skip_list_holds_only_crds() -> None:
    """Only custom resources may bypass kubernetes-validate, and each has its CRD."""
    kv = _kubernetes_validate()
    for (api_version, kind), path in CRD_SCHEMAS.items():
        group = api_version.split("/")[0]
        assert "." in group and not group.endswith(".k8s.io"), f"{kind}: {group} is built in"
        with pytest.raises(kv.SchemaNotFoundError):
            kv.validate({"apiVersion": api_version, "kind": kind}, K8S_VERSIONS[-1], strict=True)
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind


def test_scaledobject_targets_the_hub_deployment() -> None:
    objects = render("cloud")
    scaled = find(objects, "ScaledObject", "agl-hub")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    hub = find(objects, "Deployment", target["name"])
    assert hub["spec"]["replicas"] == scaled["spec"]["minReplicaCount"]


@pytest.mark.parametrize("name", sorted(VENDORED_SHA256))
def test_vendored_schemas_are_unmodified(name: str) -> None:
    digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
    assert digest == VENDORED_SHA256[name], f"{name} differs from the copy SOURCES.md describes"
    assert name in (DATA / "SOURCES.md").read_text(encoding="utf-8")
