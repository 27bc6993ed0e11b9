"""deploy/k8s: each overlay renders, validates against the Kubernetes schemas and hangs together."""

from __future__ import annotations

import copy
import functools
import importlib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from cryptography.fernet import Fernet
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from odr_shared.events import PRIVACY_TOPIC, TOPICS, dead_letter_topic
from odr_shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "odr"
# Oldest and newest Kubernetes minors the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30", "1.37")
# Custom resources: no built-in schema; their structure is checked by the tests below.
CRD_GROUPS = ("kafka.strimzi.io", "postgresql.cnpg.io")
RUN_AS_USER = 10001  # the UID of the images (deploy/docker/*.Dockerfile)
# How long Kafka keeps messages (kafka/topics.yaml): main topics, and their dead-letter twins.
DAY_MS = 24 * 3600 * 1000
RETENTION_DAYS = 7
DEAD_LETTER_RETENTION_DAYS = 14

# service -> (python package, service directory)
SERVICES = {
    "gateway": ("gateway", "marketplace-gateway"),
    "complaints": ("complaints", "complaints"),
    "mediation": ("mediation", "mediation"),
    "notifications": ("notifications", "notifications"),
}
COMPONENTS = ("api", "worker", "migration")

# Secrets the operator creates before applying an overlay (docs/deploy.md lists them): name ->
# keys. Nothing else may be referenced; no Secret object is in the repository.
EXTERNAL_SECRETS: dict[str, set[str]] = {
    "odr-jwt": {"jwt-secret"},
    "odr-tls": {"tls.crt", "tls.key"},
    "odr-notifications-providers": {"smtp-username", "smtp-password", "sms-api-key"},
    **{f"odr-{s}-db": {"username", "password"} for s in SERVICES},
    # Each service's own key material: data at rest, and the master key of its subject keys.
    **{f"odr-{s}-encryption": {"data-encryption-key", "privacy-master-key"} for s in SERVICES},
    # One key for all four services: it names a data subject alike everywhere.
    "odr-privacy": {"subject-key"},
}

# Settings that must be set in production even though they have a development default (a field
# listed here counts only if that service's Settings class has it).
PRODUCTION_REQUIRED_FIELDS = {
    "environment",
    "kafka_bootstrap_servers",
    "jwt_secret",
    "data_encryption_key",
    "database_url",
    "public_base_url",
    "complaints_url",
    "storage_dir",
    "smtp_host",
    "smtp_port",
    "smtp_starttls",
    "mail_from",
    "sms_provider_url",
    "portal_url",
    "dashboard_url",
    "secure_cookies",
    "service_urls",
    "privacy_subject_key",
}
# Named by issue 7 for services whose branches add them; the manifests set them already, so they
# must be set whether or not the Settings field exists yet.
NAMED_BY_ISSUE = {
    "complaints": {"COMPLAINTS_STORAGE_DIR"},
    "mediation": {"MEDIATION_COMPLAINTS_URL"},
    "notifications": {
        "NOTIFICATIONS_SMTP_HOST",
        "NOTIFICATIONS_SMTP_PORT",
        "NOTIFICATIONS_SMS_PROVIDER_URL",
    },
}
# Every variable the manifests set is read by a Settings class; anything unknown is a typo.
PENDING_SETTINGS: set[str] = set()
# Read by the runtime, not by Settings: uvicorn's runner, Python, libpq, odr_shared.worker.
RUNTIME_ENV = {
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "PYTHONUNBUFFERED",
    "PGUSER",
    "PGPASSWORD",
    "WORKER_HEALTH_PORT",
    "FORWARDED_ALLOW_IPS",
    "KAFKA_ENSURE_TOPICS",
}

Doc = dict[str, Any]


# --- helpers -------------------------------------------------------------------------------------


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Workload:
    doc: Doc

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def pod_labels(self) -> dict[str, str]:
        return dict(self.doc["spec"]["template"]["metadata"]["labels"])

    @property
    def service(self) -> str:
        return self.pod_labels["app.kubernetes.io/name"]

    @property
    def component(self) -> str:
        return self.pod_labels["app.kubernetes.io/component"]

    @property
    def pod(self) -> Doc:
        return dict(self.doc["spec"]["template"]["spec"])

    @property
    def containers(self) -> list[Doc]:
        return list(self.pod["containers"]) + list(self.pod.get("initContainers", []))


def workloads(docs: list[Doc]) -> list[Workload]:
    return [Workload(d) for d in docs if d["kind"] in ("Deployment", "Job")]


def workload(docs: list[Doc], service: str, component: str) -> Workload:
    found = [w for w in workloads(docs) if (w.service, w.component) == (service, component)]
    assert len(found) == 1, f"expected one {service} {component}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class SecretValue:
    name: str
    key: str


def container_env(docs: list[Doc], container: Doc) -> dict[str, str | SecretValue]:
    """The container's environment as the kubelet builds it: envFrom, then env with $(VAR)."""
    env: dict[str, str | SecretValue] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"only ConfigMaps are loaded wholesale: {source}"
        env.update(named(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for var in container.get("env", []):
        if "value" in var:
            value = str(var["value"])
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
                resolved = env[ref]
                assert isinstance(resolved, str), f"$({ref}) would expand to a secret"
                value = value.replace(f"$({ref})", resolved)
            env[var["name"]] = value
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SecretValue(ref["name"], ref["key"])
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = named(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's Settings class, found in its settings module at test time."""
    package = SERVICES[service][0]
    module = importlib.import_module(f"{package}.settings")
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type)
        and issubclass(c, ServiceSettings)
        and c is not ServiceSettings
        and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__} should define one Settings class: {classes}"
    return classes[0]


def env_names(cls: type[ServiceSettings], name: str, field: FieldInfo) -> set[str]:
    """The environment variables pydantic-settings reads for one field (case-insensitive)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = {c for c in alias.choices if isinstance(c, str)}
    elif isinstance(alias, str):
        names = {alias}
    elif field.alias:
        names = {field.alias}
    else:
        names = {str(cls.model_config.get("env_prefix", "")) + name}
    return {n.upper() for n in names}


def production_required(service: str) -> dict[str, set[str]]:
    """field -> its env names, for every field the service needs set in production."""
    cls = settings_class(service)
    return {
        name: env_names(cls, name, field)
        for name, field in cls.model_fields.items()
        if field.is_required() or name in PRODUCTION_REQUIRED_FIELDS
    }


def secret_sample(value: SecretValue) -> str:
    # Strong stand-ins with the real formats (docs/deploy.md: how each is generated).
    if value.key == "data-encryption-key":
        return Fernet.generate_key().decode()
    return secrets.token_hex(32)


# --- rendering and schemas -----------------------------------------------------------------------


def test_every_overlay_renders_the_whole_platform(rendered, overlay):
    docs = rendered[overlay]
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    assert deployments == {f"{s}-{c}" for s in SERVICES for c in ("api", "worker")}
    assert {d["metadata"]["name"] for d in of_kind(docs, "Job")} == {
        f"{s}-migrate" for s in SERVICES
    }
    assert not of_kind(docs, "Secret"), "Secret values never live in the repository"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


@pytest.fixture(scope="module", autouse=True)
def _schemas_parsed_once() -> Iterator[None]:
    # kubernetes_validate re-reads and re-parses its JSON schemas on every call (seconds here).
    with pytest.MonkeyPatch.context() as patch:
        cached = functools.cache(kubernetes_validate.utils.schema_contents)
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_validate_against_the_kubernetes_schemas(rendered, overlay, version):
    checked = 0
    for doc in rendered[overlay]:
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
        checked += 1
    assert checked > 40


def test_schema_validation_catches_a_mistake(rendered):
    # The check above would pass vacuously if strict validation ignored unknown fields.
    deployment = copy.deepcopy(of_kind(rendered["production"], "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- cross-references ----------------------------------------------------------------------------


def test_every_service_selects_the_pods_of_exactly_one_deployment(rendered, overlay):
    docs = rendered[overlay]
    for service in of_kind(docs, "Service"):
        matching = [
            d
            for d in of_kind(docs, "Deployment")
            if selects({"matchLabels": service["spec"]["selector"]}, Workload(d).pod_labels)
        ]
        name = service["metadata"]["name"]
        assert len(matching) == 1, f"Service {name} selects {len(matching)} Deployments"
        ports = {p["name"] for c in Workload(matching[0]).containers for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"


def test_ingress_routes_to_existing_service_ports(rendered, overlay):
    docs = rendered[overlay]
    routed = set()
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = named(docs, "Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
                routed.add(backend["name"])
    assert routed == {f"{s}-api" for s in SERVICES}


def test_every_hpa_targets_an_existing_deployment(rendered, overlay):
    docs = rendered[overlay]
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
    assert targets == {f"{s}-api" for s in SERVICES}, "one HPA per API"
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        target = named(docs, "Deployment", ref["name"])
        # Otherwise every `kubectl apply` would reset the count the HPA chose.
        assert "replicas" not in target["spec"], f"{ref['name']}: replicas belong to its HPA"
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"], "an HPA needs a metric"


def test_every_pdb_selects_the_pods_of_a_deployment(rendered, overlay):
    docs = rendered[overlay]
    covered = set()
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        matching = [w for w in workloads(docs) if selects(pdb["spec"]["selector"], w.pod_labels)]
        assert matching, f"PDB {pdb['metadata']['name']} selects no pods"
        assert all(w.doc["kind"] == "Deployment" for w in matching)
        covered.update(w.name for w in matching)
    assert covered == {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}


def test_every_config_map_secret_and_claim_reference_resolves(rendered, overlay):
    docs = rendered[overlay]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    claims = {d["metadata"]["name"] for d in of_kind(docs, "PersistentVolumeClaim")}
    accounts = {d["metadata"]["name"] for d in of_kind(docs, "ServiceAccount")}
    secret_refs: set[tuple[str, str | None]] = set()
    for w in workloads(docs):
        assert w.pod["serviceAccountName"] in accounts
        for volume in w.pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "secret" in volume:
                secret_refs.add((volume["secret"]["secretName"], None))
        for container in w.containers:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert (
                        ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]
                    )
                if "secretKeyRef" in ref:
                    secret_refs.add((ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]))
    for ingress in of_kind(docs, "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            secret_refs.add((tls["secretName"], "tls.crt"))
    for cluster in of_kind(docs, "Cluster"):
        for role in cluster["spec"]["managed"]["roles"]:
            secret_refs.update(
                (role["passwordSecret"]["name"], k) for k in ("username", "password")
            )
    assert secret_refs
    for name, key in secret_refs:
        assert name in EXTERNAL_SECRETS, f"Secret {name} is not a documented external Secret"
        assert key is None or key in EXTERNAL_SECRETS[name], f"Secret {name} has no key {key}"


def test_the_deploy_guide_lists_every_external_secret_and_key():
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name, keys in EXTERNAL_SECRETS.items():
        assert name in guide, f"docs/deploy.md does not tell how to create Secret {name}"
        for key in keys:
            assert key in guide, f"docs/deploy.md does not name key {key} of Secret {name}"


# --- pods ----------------------------------------------------------------------------------------


def test_each_service_runs_its_own_console_scripts_from_its_own_image(rendered, overlay):
    import tomllib

    docs = rendered[overlay]
    for service, (_package, directory) in SERVICES.items():
        pyproject = ROOT / "services" / directory / "pyproject.toml"
        scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
        images = set()
        for component, script in (("api", "api"), ("worker", "worker"), ("migration", "migrate")):
            (container,) = workload(docs, service, component).pod["containers"]
            assert container["command"] == [f"{service}-{script}"]
            assert container["command"][0] in scripts
            images.add(container["image"])
        assert len(images) == 1, f"{service}: api, worker and migration must share an image"
        (image,) = images
        assert re.fullmatch(rf"(.+/)?odr/{service}:[\w.-]+", image), image


def test_apis_and_workers_are_probed_on_healthz_and_readyz(rendered, overlay):
    docs = rendered[overlay]
    for w in workloads(docs):
        if w.component == "migration":
            continue
        (container,) = w.pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if w.component == "api":
            port_name = "http"
            # The runner listens where the Service and the probes look.
            assert container["args"] == ["--host", "0.0.0.0", "--port", str(ports["http"])]
            # Behind the ingress every client would otherwise share the controller's address,
            # and per-IP rate limits (one-time codes) would throttle the whole country at once.
            assert container_env(docs, container).get("FORWARDED_ALLOW_IPS"), w.name
        else:
            port_name = "health"
            env = container_env(docs, container)
            assert env["WORKER_HEALTH_PORT"] == str(ports["health"]), w.name
        for probe, path in (
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": port_name}, (w.name, probe)


def test_every_container_is_non_root_read_only_and_bounded(rendered, overlay):
    for w in workloads(rendered[overlay]):
        pod_security = w.pod.get("securityContext", {})
        assert pod_security.get("runAsUser") == RUN_AS_USER, w.name
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", w.name
        assert w.pod.get("automountServiceAccountToken") is False, w.name
        for container in w.containers:
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, w.name
            assert security.get("readOnlyRootFilesystem") is True, w.name
            assert security.get("allowPrivilegeEscalation") is False, w.name
            assert "ALL" in security.get("capabilities", {}).get("drop", []), w.name
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (w.name, bound)


def test_every_writable_path_is_a_volume(rendered, overlay):
    # With a read-only root filesystem, /tmp and every configured *_DIR must be mounted.
    docs = rendered[overlay]
    for w in workloads(docs):
        volumes = {v["name"]: v for v in w.pod.get("volumes", [])}
        for container in w.containers:
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, w.name
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], w.name
            for name, value in container_env(docs, container).items():
                if name.endswith("_DIR"):
                    assert value in mounts, f"{w.name}: {name}={value} is not a volume"
                    assert not mounts[value].get("readOnly"), f"{w.name}: {value} is read-only"
    evidence = workload(docs, "complaints", "api").pod["volumes"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") for v in evidence)


def test_the_settings_each_container_needs_in_production_are_set(rendered, overlay):
    docs = rendered[overlay]
    for w in workloads(docs):
        required = production_required(w.service)
        for container in w.containers:
            env = container_env(docs, container)
            for field, names in required.items():
                assert names & set(env), f"{w.name}: {field} is unset (one of {sorted(names)})"
            for name in NAMED_BY_ISSUE.get(w.service, set()):
                assert name in env, f"{w.name}: {name} is unset"


def test_every_variable_set_is_read_by_the_service_or_its_runtime(rendered, overlay):
    docs = rendered[overlay]
    for w in workloads(docs):
        cls = settings_class(w.service)
        known = set().union(*(env_names(cls, n, f) for n, f in cls.model_fields.items()))
        for container in w.containers:
            unknown = set(container_env(docs, container)) - known - RUNTIME_ENV - PENDING_SETTINGS
            assert not unknown, f"{w.name} sets variables nothing reads (typos?): {unknown}"


def test_each_service_accepts_its_environment_in_production(rendered, overlay, monkeypatch):
    # The real Settings classes, given exactly what the kubelet would give each container
    # (secrets replaced by strong values), must load: production refuses placeholders.
    docs = rendered[overlay]
    for w in workloads(docs):
        cls = settings_class(w.service)
        for container in w.containers:
            env = {
                name: value if isinstance(value, str) else secret_sample(value)
                for name, value in container_env(docs, container).items()
            }
            for name in list(os.environ):
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = cls()
            assert settings.environment == "production", w.name
            database_url = str(settings.database_url)
            assert database_url.startswith("postgresql+psycopg://"), w.name
            assert f"/{w.service}?" in database_url, f"{w.name} must use its own database"
            monkeypatch.undo()


PRIVACY_KEYS = ("PRIVACY_MASTER_KEY", "PRIVACY_MASTER_KEY_FILE", "PRIVACY_SUBJECT_KEY")


def test_every_service_container_gets_its_privacy_keys_from_secrets(rendered, overlay):
    # Production refuses to start without them (odr_shared.settings); they must never be
    # literal values in a manifest or a ConfigMap.
    docs = rendered[overlay]
    for config_map in of_kind(docs, "ConfigMap"):
        leaked = set(config_map.get("data", {})) & set(PRIVACY_KEYS)
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds {leaked}"
    masters: set[SecretValue] = set()
    for service in SERVICES:
        for component in COMPONENTS:
            w = workload(docs, service, component)
            for container in w.containers:
                env = container_env(docs, container)
                master = env.get("PRIVACY_MASTER_KEY")
                assert isinstance(master, SecretValue), f"{w.name}: PRIVACY_MASTER_KEY {master!r}"
                # Each service wraps its subjects' keys with its own master key.
                assert master == SecretValue(f"odr-{service}-encryption", "privacy-master-key")
                masters.add(master)
                subject = env.get("PRIVACY_SUBJECT_KEY")
                assert subject == SecretValue("odr-privacy", "subject-key"), w.name
    assert len(masters) == len(SERVICES), "one master key per service"


def test_database_credentials_and_urls_match_the_postgres_cluster(rendered, overlay):
    docs = rendered[overlay]
    (cluster,) = of_kind(docs, "Cluster")
    roles = {r["name"]: r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d["spec"] for d in of_kind(docs, "Database")}
    assert set(databases) == set(SERVICES), "one database per service"
    for service in SERVICES:
        assert databases[service]["owner"] == service
        assert databases[service]["cluster"]["name"] == cluster["metadata"]["name"]
        assert roles[service] == f"odr-{service}-db", "each service owns its credentials"
        for component in COMPONENTS:
            (container,) = workload(docs, service, component).pod["containers"]
            env = container_env(docs, container)
            assert env["PGUSER"] == SecretValue(roles[service], "username")
            assert env["PGPASSWORD"] == SecretValue(roles[service], "password")
            url = env[f"{service.upper()}_DATABASE_URL"]
            assert isinstance(url, str)
            assert url.startswith(f"postgresql+psycopg://{cluster['metadata']['name']}-rw:5432/")
            assert "@" not in url, "the password comes from PGPASSWORD, never the URL"


def api_service(docs: list[Doc], service: str) -> Doc:
    """The one Service in front of the service's API pods."""
    pods = workload(docs, service, "api").pod_labels
    (found,) = [
        s for s in of_kind(docs, "Service") if selects({"matchLabels": s["spec"]["selector"]}, pods)
    ]
    return found


def test_service_urls_name_each_api_service_and_its_port(rendered, overlay):
    # Services call each other (subject keys, data exports) at SERVICE_URLS: each entry must be
    # the in-cluster Service of that service's API, on the Service's http port.
    docs = rendered[overlay]
    value = named(docs, "ConfigMap", "odr-platform")["data"]["SERVICE_URLS"]
    urls = dict(part.strip().split("=", 1) for part in value.split(","))
    assert set(urls) == set(SERVICES), value
    settings = ServiceSettings(service_urls=value, environment="development")
    for service, url in urls.items():
        parts = urlsplit(url)
        assert parts.scheme == "http", url
        assert parts.path in ("", "/"), url
        assert not parts.query, url
        target = api_service(docs, service)
        assert parts.hostname == target["metadata"]["name"], f"{service}: {url}"
        (http,) = [p for p in target["spec"]["ports"] if p["name"] == "http"]
        assert (parts.port or 80) == http["port"], f"{service}: {url}"
        # The Settings read it alike (odr_shared.settings.ServiceSettings.service_url).
        assert settings.service_url(service) == url.rstrip("/")
    for w in workloads(docs):
        if w.component != "migration":
            (container,) = w.pod["containers"]
            assert container_env(docs, container).get("SERVICE_URLS") == value, w.name


def test_kafka_bootstrap_is_the_strimzi_plain_listener(rendered, overlay):
    docs = rendered[overlay]
    (kafka,) = of_kind(docs, "Kafka")
    plain = [
        listener
        for listener in kafka["spec"]["kafka"]["listeners"]
        if listener["type"] == "internal" and not listener["tls"]
    ]
    assert len(plain) == 1
    for listener in kafka["spec"]["kafka"]["listeners"]:
        assert listener.get("networkPolicyPeers"), f"listener {listener['name']} is open to all"
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{plain[0]['port']}"
    assert named(docs, "ConfigMap", "odr-platform")["data"]["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    for w in workloads(docs):
        if w.component != "migration":
            peers = plain[0]["networkPolicyPeers"]
            assert any(selects(p.get("podSelector"), w.pod_labels) for p in peers), w.name


# --- Kafka and PostgreSQL custom resources -------------------------------------------------------


def test_kafka_runs_in_kraft_mode_with_node_pools(rendered, overlay):
    docs = rendered[overlay]
    (kafka,) = of_kind(docs, "Kafka")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    pools = of_kind(docs, "KafkaNodePool")
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert pool["spec"]["replicas"] >= 1
        assert pool["spec"]["roles"]
        assert pool["spec"]["storage"]["type"] in ("jbod", "persistent-claim")
    roles = [r for p in pools for r in p["spec"]["roles"] for _ in range(p["spec"]["replicas"])]
    controllers, brokers = roles.count("controller"), roles.count("broker")
    assert controllers % 2 == 1, "a KRaft quorum needs an odd number of controllers"
    replication = kafka["spec"]["kafka"]["config"]["default.replication.factor"]
    assert brokers >= replication
    if overlay == "production":
        assert controllers >= 3
        assert brokers >= 3
        assert replication == 3
        assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2


def test_kafka_topics_are_the_contract_topics_and_their_dead_letters(rendered, overlay):
    docs = rendered[overlay]
    for w in workloads(docs):
        if w.component == "worker":
            # Else a worker starting before the topic operator would create them (1 replica).
            env = container_env(docs, w.pod["containers"][0])
            assert env.get("KAFKA_ENSURE_TOPICS") == "false", w.name
    (kafka,) = of_kind(docs, "Kafka")
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}
    assert set(topics) == set(TOPICS) | {dead_letter_topic(t) for t in TOPICS}
    # Named here too, so a contract that lost it would not silently drop its topics.
    assert {PRIVACY_TOPIC, dead_letter_topic(PRIVACY_TOPIC)} <= set(topics)
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", topic["metadata"]["name"])
        expected_partitions = 3 if name.endswith(".dlq") else 12
        assert topic["spec"]["partitions"] == expected_partitions, name
        # Nothing is kept forever: messages carry (sealed) personal data (docs/privacy.md).
        expected_days = DEAD_LETTER_RETENTION_DAYS if name.endswith(".dlq") else RETENTION_DAYS
        assert topic["spec"]["config"]["retention.ms"] == expected_days * DAY_MS, name
        assert topic["spec"]["config"]["cleanup.policy"] == "delete", name
        if overlay == "production":
            assert topic["spec"]["replicas"] == 3, name
            assert topic["spec"]["config"]["min.insync.replicas"] == 2, name


def test_postgres_is_one_cloudnativepg_cluster(rendered, overlay):
    docs = rendered[overlay]
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["storage"]["size"]
    assert cluster["spec"]["enableSuperuserAccess"] is False
    for role in cluster["spec"]["managed"]["roles"]:
        assert role["login"] is True
        assert role["ensure"] == "present"
    for database in of_kind(docs, "Database"):
        assert database["apiVersion"] == "postgresql.cnpg.io/v1"
        assert database["spec"]["databaseReclaimPolicy"] == "retain", "never drop a database"
    if overlay == "production":
        assert cluster["spec"]["instances"] >= 3


# --- sizing --------------------------------------------------------------------------------------


def test_production_is_redundant_and_workers_fit_their_partitions(rendered):
    docs = rendered["production"]
    partitions = min(
        t["spec"]["partitions"]
        for t in of_kind(docs, "KafkaTopic")
        if not t["spec"]["topicName"].endswith(".dlq")
    )
    for deployment in of_kind(docs, "Deployment"):
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, "rollouts never reduce capacity"
        if Workload(deployment).component == "worker":
            replicas = deployment["spec"]["replicas"]
            assert replicas >= 2, f"{deployment['metadata']['name']} is a single point of failure"
            assert replicas <= partitions, "consumers beyond the partition count sit idle"
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 2, "an API is never a single point of failure"
        assert hpa["spec"]["maxReplicas"] >= 2 * hpa["spec"]["minReplicas"]
    claim = named(docs, "PersistentVolumeClaim", "complaints-evidence")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "API replicas share evidence"


def test_dev_runs_one_of_everything(rendered):
    docs = rendered["dev"]
    workers = [d for d in of_kind(docs, "Deployment") if Workload(d).component == "worker"]
    assert {d["spec"]["replicas"] for d in workers} == {1}
    assert {h["spec"]["minReplicas"] for h in of_kind(docs, "HorizontalPodAutoscaler")} == {1}
    assert {t["spec"]["replicas"] for t in of_kind(docs, "KafkaTopic")} == {1}
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["spec"]["instances"] == 1


# --- network policies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (namespace and labels) or an address outside the cluster."""

    namespace: str | None = NAMESPACE
    namespace_labels: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ip: str | None = None

    @classmethod
    def pod(cls, namespace: str = NAMESPACE, **labels: str) -> Peer:
        ns_labels = (("kubernetes.io/metadata.name", namespace),)
        return cls(namespace, ns_labels, tuple(labels.items()))

    @classmethod
    def app(cls, service: str, component: str) -> Peer:
        return cls.pod(
            **{
                "app.kubernetes.io/name": service,
                "app.kubernetes.io/component": component,
                "app.kubernetes.io/part-of": "odr-platform",
            }
        )

    @classmethod
    def address(cls, ip: str) -> Peer:
        return cls(namespace=None, ip=ip)


KAFKA = Peer.pod(**{"strimzi.io/cluster": "odr-kafka", "strimzi.io/kind": "Kafka"})
POSTGRES = Peer.pod(**{"cnpg.io/cluster": "odr-postgres", "cnpg.io/instanceRole": "primary"})
DNS = Peer.pod("kube-system", **{"k8s-app": "kube-dns"})
INGRESS_CONTROLLER = Peer.pod("ingress-nginx", **{"app.kubernetes.io/name": "ingress-nginx"})
INTERNET = Peer.address("203.0.113.7")
CLUSTER_ADDRESS = Peer.address("10.96.0.10")


def peer_matches(rule_peer: Doc, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        ip = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        excluded = any(ip in ipaddress.ip_network(c) for c in block.get("except", []))
        return ip in ipaddress.ip_network(block["cidr"]) and not excluded
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], dict(peer.namespace_labels)):
            return False
    elif peer.namespace != NAMESPACE:
        return False
    pod_selector = rule_peer.get("podSelector")
    return pod_selector is None or selects(pod_selector, dict(peer.labels))


def port_matches(rule: Doc, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports
    )


def allowed(policies: list[Doc], pod: Peer, other: Peer, port: int, direction: str) -> bool:
    """May `pod` send to (Egress) or receive from (Ingress) `other` on TCP `port`?"""
    if pod.namespace != NAMESPACE:
        return True  # not governed by this namespace's policies
    governing = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], dict(pod.labels))
    ]
    if not governing:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in governing:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(p, other) for p in peers)) and port_matches(
                rule, port
            ):
                return True
    return False


def connects(policies: list[Doc], source: Peer, target: Peer, port: int) -> bool:
    return allowed(policies, source, target, port, "Egress") and allowed(
        policies, target, source, port, "Ingress"
    )


def expected_paths(http_ports: dict[str, int]) -> Iterator[tuple[Peer, Peer, int, bool]]:
    """(source, target, port, allowed): what each service needs, and nothing more.

    `http_ports`: service -> the container port its API Service forwards to.
    """
    for service in SERVICES:
        api, worker, migration = (Peer.app(service, c) for c in COMPONENTS)
        for pod in (api, worker, migration):
            yield pod, DNS, 53, True
            yield pod, POSTGRES, 5432, True
        yield api, KAFKA, 9092, True
        yield worker, KAFKA, 9092, True
        yield migration, KAFKA, 9092, False
        yield INGRESS_CONTROLLER, api, 8080, True
        yield INGRESS_CONTROLLER, worker, 8080, False
        yield INGRESS_CONTROLLER, worker, 8081, False
        yield api, worker, 8081, False
        yield api, INTERNET, 443, False
        yield migration, INTERNET, 443, False
        needs_https = service in ("gateway", "notifications")
        yield worker, INTERNET, 443, needs_https
        yield worker, INTERNET, 587, service == "notifications"
        yield worker, CLUSTER_ADDRESS, 443, False
        # Service-to-service calls (subject keys, data exports, the dashboard's case detail):
        # api and worker pods of every service reach every API on its http port, nothing else.
        for callee, port in http_ports.items():
            callee_api = Peer.app(callee, "api")
            yield api, callee_api, port, True
            yield worker, callee_api, port, True
            yield migration, callee_api, port, False
            yield worker, callee_api, 8000, False
            yield worker, Peer.app(callee, "worker"), 8081, False
            yield worker, Peer.app(callee, "migration"), port, False
        # Platform labels count only inside the namespace (a look-alike elsewhere is refused), and
        # the namespace's other pods (Kafka's) are not the platform.
        yield Peer.pod("default", **dict(worker.labels)), api, http_ports[service], False
        yield KAFKA, api, http_ports[service], False


def api_http_port(docs: list[Doc], service: str) -> int:
    """The container port behind the API Service's http port (what NetworkPolicies see)."""
    (port,) = [p for p in api_service(docs, service)["spec"]["ports"] if p["name"] == "http"]
    (container,) = workload(docs, service, "api").pod["containers"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    return int(target["containerPort"])


def test_network_policies_allow_what_each_service_needs_and_nothing_else(rendered, overlay):
    docs = rendered[overlay]
    policies = of_kind(docs, "NetworkPolicy")
    http_ports = {s: api_http_port(docs, s) for s in SERVICES}
    wrong = [
        f"{dict(source.labels) or source.ip} -> {dict(target.labels) or target.ip}:{port} "
        f"should be {'allowed' if expected else 'denied'}"
        for source, target, port, expected in expected_paths(http_ports)
        if connects(policies, source, target, port) != expected
    ]
    assert not wrong, "\n".join(wrong)


def test_every_platform_pod_is_under_default_deny_and_its_own_policy(rendered, overlay):
    docs = rendered[overlay]
    policies = of_kind(docs, "NetworkPolicy")
    deny = named(docs, "NetworkPolicy", "odr-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress")
    assert not deny["spec"].get("egress")
    for w in workloads(docs):
        assert selects(deny["spec"]["podSelector"], w.pod_labels), w.name
        own = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
            == w.service
            and selects(p["spec"]["podSelector"], w.pod_labels)
        ]
        assert own, f"{w.name} has no NetworkPolicy of its own"
    # Kafka and PostgreSQL pods are left to their operators: default deny must not cut them off.
    for peer in (KAFKA, POSTGRES):
        assert not selects(deny["spec"]["podSelector"], dict(peer.labels))
