"""deploy/ checked without Docker or a cluster: the manifests against Kubernetes' own schemas (offline),
the KEDA objects' fields, and compose and the manifests against the code's topics, ports and settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from leadpipe_common import topics, topology
from leadpipe_common.local.configdoc import rows

DEPLOY = Path(__file__).parents[1] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES = "1.33"
SERVICES = [s.name for s in topology.SERVICES]


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def example_secrets() -> dict[str, dict[str, Any]]:
    """The Secrets the operator makes, as ``secrets.example.yaml`` shows them (never applied by the kustomization)."""
    docs = yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d}


def known_variables() -> set[str]:
    """Every variable a leadpipe process reads, <SERVICE>_ expanded for each service."""
    names = set()
    for env, _, _ in rows():
        env = env.strip("`")
        names |= {env.replace("<SERVICE>", s.upper()) for s in SERVICES} if "<SERVICE>" in env else {env}
    return names


@pytest.mark.parametrize("doc", [d for d in [*manifests(), *example_secrets().values()]
                                 if not d["apiVersion"].startswith("keda.sh/")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_kubernetes(doc):
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_each_service_has_a_deployment_that_creates_the_topics_and_migrates_before_it_serves():
    deployments = of_kind("Deployment")
    assert set(deployments) == set(SERVICES)
    images = {i["name"] for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        init = [(c["name"], c["command"]) for c in pod["initContainers"]]
        assert init == [("topics", ["leadpipe-create-topics"]), ("migrate", [f"leadpipe-{name}", "migrate"])], name
        [container] = pod["containers"]
        assert {c["image"] for c in [container, *pod["initContainers"]]} == {f"leadpipe-{name}"}
        assert f"leadpipe-{name}" in images, "the kustomization names every image's registry and tag"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env[f"{name.upper()}_PORT"] == str(container["ports"][0]["containerPort"])
        assert set(env) <= known_variables(), set(env) - known_variables()


def test_no_pod_gets_a_service_link_variable_that_a_setting_reads():
    """Kubernetes puts Docker-link variables for every Service of the namespace into every container it starts
    (``CAPTURE_PORT=tcp://10.96.0.12:80`` for the Service ``capture``), init containers too: ``migrate``, which
    sets no port of its own, refused to start, and no pod ever came up."""
    links = set()
    for name, service in of_kind("Service").items():
        stem = name.upper().replace("-", "_")
        links |= {f"{stem}_PORT", f"{stem}_SERVICE_HOST", f"{stem}_SERVICE_PORT"}
        for port in service["spec"]["ports"]:
            tcp = f"{stem}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
            links |= {tcp, f"{tcp}_PROTO", f"{tcp}_PORT", f"{tcp}_ADDR"}
    assert links & known_variables(), "the check below would hold for nothing"
    for name, d in of_kind("Deployment").items():
        assert d["spec"]["template"]["spec"].get("enableServiceLinks") is False, name


def pod_templates() -> dict[str, dict[str, Any]]:
    """Every pod spec the manifests make, by its object's kind and name."""
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"] for d in manifests()
            if "template" in d.get("spec", {})}


def test_every_container_runs_as_the_images_user_with_no_privilege_and_a_read_only_root():
    """No pod said whom to run as: a container started from another image, or with the image's USER
    overridden, ran as root, could gain privileges, held the runtime's default capabilities and could write
    to its filesystem."""
    uid = int(re.search(r"^USER (\d+)$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE).group(1))
    assert pod_templates()
    for name, pod in pod_templates().items():
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid,
                                          "seccompProfile": {"type": "RuntimeDefault"}}, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}, f"{name}: {container['name']}"


def test_only_captures_port_is_open_to_anyone_and_every_other_service_takes_its_own_namespace_only():
    """Nothing held the pods: any workload of the cluster, in any namespace, could call routing, reporting and
    delivery, and reach every port a container opened."""
    policies = of_kind("NetworkPolicy").values()
    for name, deployment in of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        held = [p["spec"] for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert held and all(p["policyTypes"] == ["Ingress"] for p in held), name
        rules = [rule for p in held for rule in p["ingress"]]
        assert all(rule["ports"] == [{"port": "http"}] for rule in rules), name
        froms = [rule.get("from") for rule in rules]
        assert [{"podSelector": {}}] in froms, f"{name} is not reached from its own namespace"
        assert any(not f for f in froms) == (name == "capture"), f"{name}: only capture is open to anyone"


def test_the_shared_configuration_names_only_settings_the_code_reads():
    config = of_kind("ConfigMap")["leadpipe"]["data"]
    assert set(config) <= known_variables(), set(config) - known_variables()
    assert set(example_secrets()["leadpipe-db"]["stringData"]) <= known_variables()


def test_an_apply_never_puts_a_placeholder_secret_back_over_the_operators():
    """The Secrets were resources of the kustomization, placeholders and all: each `kubectl apply -k` after the
    operator had set them put `replace-me` back (every pod refused the session secret at its next start, and
    Prometheus' scrapes got 401)."""
    assert of_kind("Secret") == {}
    referenced = {ref["secretRef"]["name"] for pod in pod_templates().values()
                  for container in [*pod.get("initContainers", []), *pod["containers"]]
                  for ref in container.get("envFrom", []) if "secretRef" in ref}
    assert referenced <= set(example_secrets()), referenced - set(example_secrets())


def test_each_service_reaches_kafka_with_credentials_of_its_own_and_keda_reads_its_lag_with_them():
    """The manifests named a cluster that authenticates its clients but gave no pod, and no KEDA trigger, a way
    to authenticate: nothing could connect, and the stages never scaled."""
    for name, d in of_kind("Deployment").items():
        pod = d["spec"]["template"]["spec"]
        [container] = pod["containers"]
        topics_step = next(c for c in pod["initContainers"] if c["name"] == "topics")
        # Creating topics takes a right the services' own users need not have: a user of its own does it.
        for step, user in ((container, f"leadpipe-kafka-{name}"), (topics_step, "leadpipe-kafka-topics")):
            kafka = [r["secretRef"]["name"] for r in step["envFrom"] if "kafka" in r.get("secretRef", {}).get("name", "")]
            assert kafka == [user], (name, step["name"])
            credentials = example_secrets()[user]["stringData"]
            assert {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= set(credentials)
            assert set(credentials) - {"KEDA_SASL", "KEDA_TLS"} <= known_variables(), user
    authentications = of_kind("TriggerAuthentication")
    for name, obj in of_kind("ScaledObject").items():
        for trigger in obj["spec"]["triggers"]:
            auth = authentications[trigger["authenticationRef"]["name"]]
            assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {f"leadpipe-kafka-{name}"}
            keys = example_secrets()[f"leadpipe-kafka-{name}"]["stringData"]
            assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= set(keys), name


def test_no_apply_resets_the_replicas_an_autoscaler_set_and_a_pod_keeps_serving_while_it_is_taken_out():
    """spec.replicas beside an autoscaler put the count back on every apply, stopping the pods scaled out under
    load; a pod closed its port at SIGTERM while the load balancer still sent it requests."""
    scaled = {o["spec"]["scaleTargetRef"]["name"] for kind in ("ScaledObject", "HorizontalPodAutoscaler")
              for o in of_kind(kind).values()}
    assert scaled == {"capture", "enrichment", "scoring", "routing"}
    for name, d in of_kind("Deployment").items():
        assert ("replicas" in d["spec"]) == (name not in scaled), name
        pod = d["spec"]["template"]["spec"]
        [container] = pod["containers"]
        waits = container["lifecycle"]["preStop"]["exec"]["command"]
        assert waits[0] == "sleep" and pod["terminationGracePeriodSeconds"] >= int(waits[1]) + 36, name
    delivery = of_kind("Deployment")["delivery"]["spec"]["template"]["spec"]
    assert delivery["terminationGracePeriodSeconds"] >= 5 + 36 + 16, "webhook attempts under way finish"


def test_the_manifests_keep_a_place_for_the_scrapers_key_and_no_key_is_committed():
    """/metrics takes a key: Prometheus' goes in a Secret the operator fills in, never one checked in here."""
    assert set(example_secrets()["leadpipe-metrics"]["stringData"]) == {"key"}
    committed = {path.name for path in DEPLOY.rglob("*") if path.is_file()
                 and re.search(r"lpk_[0-9a-f]{12}_", path.read_text(encoding="utf-8", errors="replace"))}
    assert not committed


def test_each_consuming_stage_scales_on_the_lag_of_every_topic_it_reads():
    allowed = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
               "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset"}
    scaled = of_kind("ScaledObject")
    assert set(scaled) == {"enrichment", "scoring", "routing"}
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {"name": name}
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= topics.DEFAULT_PARTITIONS
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka" and set(trigger["metadata"]) <= allowed
            assert trigger["metadata"]["consumerGroup"] == name  # the group id is the service name
            assert int(trigger["metadata"]["lagThreshold"]) > 0
        assert sorted(t["metadata"]["topic"] for t in spec["triggers"]) == sorted(topology.inputs_of(name))


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def published(mapping: str | dict[str, Any]) -> tuple[str, str, str]:
    """A compose port as (host address, host port, container port): "8000:8000" is published on every address."""
    if isinstance(mapping, dict):
        return mapping.get("host_ip", "0.0.0.0"), str(mapping.get("published", "")), str(mapping["target"])
    parts = str(mapping).rsplit(":", 2)
    return ("0.0.0.0", *parts) if len(parts) == 2 else tuple(parts)  # type: ignore[return-value]


def test_compose_runs_every_service_on_its_port_and_keeps_kafka_s_data_in_its_volume():
    services = compose()["services"]
    kafka = services["kafka"]
    [volume] = kafka["volumes"]
    assert volume.split(":")[1] == kafka["environment"]["KAFKA_LOG_DIRS"]
    for name in SERVICES:
        env = services[name]["environment"]
        assert env[f"{name.upper()}_HOST"] == "0.0.0.0"
        assert set(env) <= known_variables(), set(env) - known_variables()
        for mapping in services[name].get("ports", []):
            assert published(mapping)[2] == env[f"{name.upper()}_PORT"]
        assert services[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    assert services["topics"]["command"] == ["leadpipe-create-topics"]


def test_compose_runs_leadpipes_containers_as_the_manifests_do_unprivileged_with_a_read_only_root():
    services = compose()["services"]
    ours = [name for name, s in services.items() if str(s.get("image", "")).startswith("leadpipe-")]
    assert set(SERVICES) < set(ours)  # the jobs too
    for name in ours:
        s = services[name]
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in s["security_opt"], name


def test_compose_publishes_only_captures_port_beyond_the_host():
    """routing, reporting and delivery were published on every interface (8003-8005), for anyone who reached the
    host to try keys against; Kafka and Postgres, which authenticate no one here, must not be published at all."""
    for name, service in compose()["services"].items():
        for mapping in service.get("ports", []):
            address, port, _ = published(mapping)
            assert name == "capture" or address == "127.0.0.1", f"{name} publishes port {port} on {address}"
    assert not compose()["services"]["kafka"].get("ports") and not compose()["services"]["postgres"].get("ports")


#: A compose variable that refuses to start without a value: ${NAME:?message}.
REQUIRED = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")


def test_compose_has_no_password_of_its_own_and_starts_with_none_missing():
    """POSTGRES_PASSWORD was `leadpipe`, in the database and in every service's DATABASE_URL: every copy of
    compose.yaml was one known password away from every lead."""
    services = compose()["services"]
    assert REQUIRED.match(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    for name in SERVICES:
        url = services[name]["environment"]["DATABASE_URL"]
        password = re.fullmatch(r"postgresql://[^:/@]+:(.+)@[^@]+", url)
        assert password and REQUIRED.match(password.group(1)), f"{name}'s DATABASE_URL has a password of its own"
    secrets = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)([^}]*)\}", (DEPLOY / "compose.yaml").read_text())
    assert secrets and all(rest.startswith(":?") for _, rest in secrets), secrets


def test_each_service_clients_reach_is_shown_how_to_name_the_proxy_in_front_of_it():
    """Neither the manifests nor compose named a TRUSTED_PROXIES: behind an ingress every client was the ingress's
    address, and one client's wrong keys throttled all of them."""
    reached = {name for name, s in compose()["services"].items() if name in SERVICES and s.get("ports")}
    assert "capture" in reached
    for path in (K8S / "config.yaml", DEPLOY / "compose.yaml"):
        shown = re.findall(r"^ *# ([A-Z]+)_TRUSTED_PROXIES: \S+$", path.read_text(), re.MULTILINE)
        assert {s.lower() for s in shown} == reached, path.name


def test_nothing_local_goes_into_an_image():
    ignored = set((Path(__file__).parents[1] / ".dockerignore").read_text().split())
    assert {".venv", ".data", ".tools", ".git"} <= ignored


def test_the_dockerfile_builds_every_service():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    hint = re.search(r"--build-arg SERVICE=<([a-z]+(?:\|[a-z]+)+)>", dockerfile)
    assert hint and set(hint.group(1).split("|")) == set(SERVICES)


def _imported(root: Path) -> set[str]:
    """The top-level modules imported by the code under ``root`` (not its local-stack and test helpers)."""
    import ast

    found = set()
    for path in root.rglob("*.py"):
        if {"local", "testing", "tests"} & set(path.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_services_image_installs_every_library_its_code_imports(service):
    """The image installs the service's dependencies without the dev and local ones (uv sync --no-dev): a
    library only the local stack brings in (httpx once) made every container fail at start."""
    import importlib.metadata
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    exported = subprocess.run([str(root / ".tools" / "bin" / "uv"), "export", "--frozen", "--no-dev", "--no-hashes",
                               "--package", f"leadpipe-{service}"], cwd=root, capture_output=True, text=True,
                              check=True).stdout
    installed = {re.split(r"[=<>~ ;\[]", line, maxsplit=1)[0].lower().replace("_", "-")
                 for line in exported.splitlines() if line and not line.startswith(("#", " ", "-e"))}
    by_module = importlib.metadata.packages_distributions()
    first_party = {"leadpipe_common", service}
    missing = sorted(
        module for module in _imported(root / "shared" / "src") | _imported(root / "services" / service / "src")
        if module not in sys.stdlib_module_names and module not in first_party
        and not {d.lower().replace("_", "-") for d in by_module.get(module, [module])} & installed)
    assert missing == [], f"imported by leadpipe-{service}'s code, not installed in its image"
