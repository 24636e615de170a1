"""Static checks of docker/ and deploy/k8s/ (Docker cannot run here): compose files and
manifests against JSON schemas of the parts we use plus cross-references between them, the
gateway configs through aragog's own loader with the files laid out as the mounts lay them
out, Prometheus configs through promtool, and the Grafana dashboard's queries against the
metrics the gateway really registers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from aragog.cli import load_all
from aragog.telemetry import Metrics

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = REPO / "deploy" / "k8s"
COMPOSE = {"gpu": DOCKER / "gpu" / "compose.yaml", "cpu": DOCKER / "cpu" / "compose.yaml"}
PROMETHEUS = {"gpu": DOCKER / "prometheus" / "gpu.yml", "cpu": DOCKER / "prometheus" / "cpu.yml"}
DASHBOARD = DOCKER / "grafana" / "dashboards" / "aragog.json"

_VOLUME = {"type": "string", "pattern": r"^[^:]+:/[^:]+(:ro)?$"}
COMPOSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["services"],
    "properties": {
        "name": {"type": "string"},
        "services": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                "properties": {
                    "image": {"type": "string", "pattern": r"^[\w./-]+(:[\w.-]+)?$"},
                    "build": {
                        "type": "object",
                        "required": ["context", "dockerfile"],
                        "additionalProperties": False,
                        "properties": {"context": {"type": "string"},
                                       "dockerfile": {"type": "string"}},
                    },
                    "command": {"type": "array", "items": {"type": "string"}},
                    "ports": {"type": "array",
                              "items": {"type": "string", "pattern": r"^\d+:\d+$"}},
                    "volumes": {"type": "array", "items": _VOLUME},
                    "environment": {"type": "object",
                                    "additionalProperties": {"type": "string"}},
                    "depends_on": {"type": ["array", "object"]},
                    "restart": {"enum": ["no", "always", "unless-stopped", "on-failure"]},
                    "healthcheck": {
                        "type": "object",
                        "required": ["test"],
                        "properties": {"test": {"type": "array", "items": {"type": "string"}}},
                    },
                    "deploy": {"type": "object"},
                    "ipc": {"type": "string"},
                    "mem_limit": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
        "volumes": {"type": "object"},
    },
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
}

_PROBE = {
    "type": "object",
    "required": ["httpGet"],
    "properties": {"httpGet": {"type": "object", "required": ["path", "port"]}},
}
K8S_SCHEMAS: dict[str, dict[str, Any]] = {
    "Deployment": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "apps/v1"},
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": {
                "type": "object",
                "required": ["selector", "template"],
                "properties": {
                    "template": {
                        "type": "object",
                        "required": ["metadata", "spec"],
                        "properties": {"spec": {
                            "type": "object",
                            "required": ["containers"],
                            "properties": {"containers": {"type": "array", "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["name", "image", "ports", "livenessProbe",
                                                 "readinessProbe"],
                                    "properties": {"livenessProbe": _PROBE,
                                                   "readinessProbe": _PROBE,
                                                   "startupProbe": _PROBE},
                                }}},
                        }},
                    }
                },
            },
        },
    },
    "Service": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "v1"},
            "spec": {"type": "object", "required": ["selector", "ports"]},
        },
    },
    "ConfigMap": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "data"],
        "properties": {"apiVersion": {"const": "v1"},
                       "data": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "Namespace": {"type": "object", "required": ["apiVersion", "kind", "metadata"]},
}


def _compose(which: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE[which].read_text())
    return data


def _flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def _lay_out_mounts(service: dict[str, Any], base: Path, root: Path) -> Path:
    """Copy each bind mount's source to where the container would see it, under ``root``."""
    for volume in service["volumes"]:
        src, dst = volume.split(":")[:2]
        source = (base / src).resolve()
        target = root / dst.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return root / "etc" / "aragog" / "gateway.yaml"


# -- compose ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gpu", "cpu"])
def test_compose_matches_schema_and_references_exist(which: str) -> None:
    compose = _compose(which)
    jsonschema.validate(compose, COMPOSE_SCHEMA)
    base = COMPOSE[which].parent
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        assert set(deps) <= set(services), f"{name}: depends_on names no service"
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):  # a bind mount, not a named volume
                assert (base / src).exists(), f"{name}: mount source {src} missing"
            else:
                assert src in compose.get("volumes", {}), f"{name}: volume {src} undeclared"
        if "build" in svc:
            assert (base / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert services["gateway"]["volumes"][0].endswith(":/etc/aragog/gateway.yaml:ro")


@pytest.mark.parametrize("which", ["gpu", "cpu"])
def test_compose_gateway_config_loads_and_names_every_engine(which: str, tmp_path: Path) -> None:
    compose = _compose(which)
    services = compose["services"]
    config = _lay_out_mounts(services["gateway"], COMPOSE[which].parent, tmp_path)
    cfg, workflows = load_all(str(config))  # aragog's own validation, workflows included
    assert cfg.workflows and set(cfg.workflows) <= set(workflows)
    engines = {
        name: svc for name, svc in services.items() if _flag(svc.get("command", []), "--model")
    }
    served = {_flag(svc["command"], "--served-model-name"): name for name, svc in engines.items()}
    for model in cfg.fleet.models:
        for engine in model.engines:
            service = served.get(model.name)
            assert service is not None, f"no compose service serves {model.name}"
            assert engine.url == f"http://{service}:8000", engine.url
    assert len(served) == len(cfg.fleet.models)


def test_gpu_fleet_uses_official_vllm_image_and_disjoint_gpus() -> None:
    services = _compose("gpu")["services"]
    taken: list[str] = []
    for name, svc in services.items():
        if not name.startswith("vllm-"):
            continue
        assert svc["image"].startswith("vllm/vllm-openai:"), name
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        ids = device["device_ids"]
        assert int(_flag(svc["command"], "--tensor-parallel-size") or 1) == len(ids), name
        taken += ids
    assert len(taken) == len(set(taken)), f"two engines share a GPU: {taken}"


# -- Prometheus ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gpu", "cpu"])
def test_prometheus_scrapes_the_gateway_and_every_engine(which: str) -> None:
    prom = yaml.safe_load(PROMETHEUS[which].read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    services = _compose(which)["services"]
    want = {f"{n}:8000" for n in services if n == "gateway" or n.startswith("vllm-")}
    assert targets == want
    mounted = [v for v in services["prometheus"]["volumes"] if "prometheus.yml" in v]
    assert mounted and (COMPOSE[which].parent / mounted[0].split(":")[0]).resolve() == PROMETHEUS[
        which
    ].resolve()


def test_promtool_check_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: run scripts/setup.sh (apt package prometheus)")
        pytest.skip("no promtool (apt-get install prometheus)")
    res = subprocess.run(
        [promtool, "check", "config", *map(str, PROMETHEUS.values())],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


# -- Grafana ---------------------------------------------------------------------------------


def _registered() -> tuple[set[str], dict[str, set[str]]]:
    """Sample names the gateway exports and each metric's label names, read from a fresh
    Metrics registry so new metrics need no edit here."""
    metrics = Metrics()
    names: set[str] = set()
    for fam in metrics.registry.collect():
        suffixes = {"counter": ("_total", "_created"),
                    "histogram": ("_bucket", "_sum", "_count", "_created")}
        names |= {fam.name + s for s in suffixes.get(fam.type, ("",))}
    labels: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for fam in value.describe():
                labels[fam.name] = set(getattr(value, "_labelnames", ()))
    return names, labels


def _base(sample: str) -> str:
    return re.sub(r"_(total|created|bucket|sum|count)$", "", sample)


def test_dashboard_queries_name_real_metrics_and_labels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    names, labels = _registered()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        used = set(re.findall(r"\baragog_[a-zA-Z0-9_]+", expr))
        assert used, f"query names no aragog_* metric: {expr}"
        assert used <= names, f"unknown metrics {sorted(used - names)} in: {expr}"
        allowed = {"le"}.union(*(labels.get(_base(u), set()) for u in used))
        grouped = {
            label.strip()
            for group in re.findall(r"\bby \(([^)]*)\)", expr)
            for label in group.split(",")
        }
        matched = set(re.findall(r"(\w+)\s*(?:=|!=|=~|!~)\s*\"", expr))
        assert grouped | matched <= allowed, f"unknown labels in: {expr}"
    topics = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("fleet load", "model mix", "queue", "latency", "router fallbacks"):
        assert topic in topics


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    prov = DOCKER / "grafana" / "provisioning"
    (ds,) = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    (provider,) = yaml.safe_load((prov / "dashboards" / "aragog.yml").read_text())["providers"]
    dash = json.loads(DASHBOARD.read_text())
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]} == {ds["uid"]}
    for which in COMPOSE:
        mounts = dict(v.split(":")[:2] for v in _compose(which)["services"]["grafana"]["volumes"])
        assert mounts["../grafana/dashboards"] == provider["options"]["path"]
        assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"


# -- Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.vllm-cpu"])
def test_images_run_as_non_root_with_a_healthcheck(name: str) -> None:
    text = (DOCKER / name).read_text()
    final = text.rsplit("\nFROM ", 1)[-1]  # the last stage is the image that ships
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD", final, re.M | re.S)
    assert "EXPOSE 8000" in final
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / copied).exists(), f"{name}: COPY {copied} not in the repository"


# -- Kubernetes ------------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out: dict[str, dict[str, Any]] = {}
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((K8S / res).read_text()):
            out[doc["kind"]] = doc
    return out


def test_k8s_manifests_match_schemas() -> None:
    manifests = _manifests()
    assert set(manifests) == set(K8S_SCHEMAS)
    for kind, doc in manifests.items():
        jsonschema.validate(doc, K8S_SCHEMAS[kind])


def test_k8s_deployment_service_and_configmap_fit_together(tmp_path: Path) -> None:
    m = _manifests()
    dep, svc, cm = m["Deployment"], m["Service"], m["ConfigMap"]
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The config as the pod sees it, through aragog's own loader.
    (volume,) = [v for v in pod["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [x for x in container["volumeMounts"] if x["name"] == volume["name"]]
    root = tmp_path / mount["mountPath"].lstrip("/")
    for item in volume["configMap"]["items"]:
        (root / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (root / item["path"]).write_text(cm["data"][item["key"]])
    cfg, workflows = load_all(str(root / "gateway.yaml"))
    assert set(workflows) == set(cfg.workflows) == {"voting-mmlu"}
    # The ConfigMap's copy of the workflow must not drift from the repository's.
    shipped = yaml.safe_load((REPO / "workflows" / "voting-mmlu.yaml").read_text())
    assert yaml.safe_load(cm["data"]["voting-mmlu.yaml"]) == shipped
