"""The Kubernetes packaging: the Helm chart in deploy/helm/strongroom and the Dockerfile.

The chart is rendered and linted by Helm's own Go engine (helm-python-sdk bundles libhelm_c, a C
ABI over Helm's SDK; no helm binary, no cluster, no network), and every rendered object is checked
against the Kubernetes 1.30 OpenAPI schemas shipped inside kubernetes-validate, in strict mode so
that a misspelt field fails instead of being dropped by the API server.

The Docker engine is not available here, so the Dockerfile is checked by parsing it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import shlex
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from server.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "strongroom"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

KUBE_VERSION = "1.30"
RELEASE = "strongroom"  # the release name that makes the Service "strongroom" (see enableServiceLinks)
NAMESPACE = "crm"
APP_UID = 10001

# Paths a Strongroom container may write to; everything else is the read-only image. The keys dir is
# writable only for the init container that installs the key files (see _helpers.tpl).
# Writable: scratch space, backups and the erasure ledger (every erasure appends to it).
WRITABLE_PATHS = {"/tmp", "/var/lib/strongroom", "/backups", "/var/lib/strongroom-ledger",
                  "/var/lib/strongroom-audit"}
KEYS_DIR = "/etc/strongroom/keys"
SECRET_STAGING_DIR = "/run/strongroom/keyring-secret"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-postgresql": {
        "database": {
            "existingSecret": "crm-db-credentials",
            "existingSecretKey": "DATABASE_URL",
            "runtime": {"existingSecret": "crm-db-runtime", "existingSecretKey": "RUNTIME_URL"},
        },
        "keyring": {"existingSecret": "crm-keyring", "mountPath": "/etc/strongroom/keys"},
        "networkPolicy": {"database": {"port": 6432, "cidrs": ["10.20.30.0/24", "10.20.31.7/32"]}},
        "backup": {"persistence": {"existingClaim": "crm-backups"}, "timeZone": "Europe/Berlin"},
        "erasureLedger": {"existingClaim": "crm-erasure-ledger"},
        "auditFiles": {"existingClaim": "crm-audit-files"},
        "serviceAccount": {"create": False, "name": "crm-runtime"},
    },
    "hpa": {
        "autoscaling": {
            "enabled": True,
            "minReplicas": 3,
            "maxReplicas": 12,
            "targetMemoryUtilizationPercentage": 80,
        },
        "podDisruptionBudget": {"maxUnavailable": "25%"},
    },
    "ingress-off": {"ingress": {"enabled": False}, "networkPolicy": {"metrics": {"enabled": True}}},
    "ingress-tls": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"cert-manager.io/cluster-issuer": "corp-ca"},
            "hosts": [
                {"host": "crm.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]},
                {"host": "crm-api.example.com", "paths": [{"path": "/api", "pathType": "Prefix"}]},
            ],
            "tls": {"enabled": True, "secretName": "crm-example-tls"},
        },
    },
    "audit-archive": {
        "auditArchive": {"enabled": True, "schedule": "15 4 * * 0", "timeZone": "Asia/Shanghai"},
        "auditFiles": {"existingClaim": "crm-audit-files"},
        "config": {"log_level": "INFO", "audit_retention_days": 2190, "audit_archive_max_events": 500000},
    },
    "backup-verify": {
        "backupVerify": {"enabled": True, "schedule": "15 6 * * 1"},
        "backup": {"timeZone": "Europe/Berlin"},
        "database": {"existingSecret": "crm-db-owner", "existingSecretKey": "OWNER_URL"},
    },
    "backup-verify-existing-claim": {
        "backupVerify": {"enabled": True, "timeZone": "Asia/Shanghai", "maxAgeHours": 0},
        "backup": {"enabled": False, "persistence": {"existingClaim": "crm-backups"}},
    },
    "restore": {
        "restore": {"file": "strongroom-20261207T020000Z-1a2b3c.srbk"},
        "autoscaling": {"enabled": True},
        "auditArchive": {"enabled": True, "schedule": "30 1 * * *"},
        "backupVerify": {"enabled": True},
    },
    "single-replica-minimal": {
        "replicaCount": 1,
        "backup": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "migrations": {"enabled": False},
        "image": {"digest": "sha256:" + "ab" * 32},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "crm", "effect": "NoSchedule"}],
    },
}


# --- rendering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@functools.cache
def _rendered(set_name: str) -> tuple[dict[str, Any], ...]:
    """Render one value set as `helm template` would and parse every object (cached per set)."""
    with helm.Chart.load(CHART_DIR) as loaded:
        manifests = loaded.render(VALUE_SETS[set_name], name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def render(set_name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(set_name)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected exactly one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template the chart renders, keyed by kind/name."""
    specs = {}
    for obj in objects:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            specs[key] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            specs[key] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            specs[key] = obj["spec"]
    return specs


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


# --- checkers (also run against known-bad input below, so they are known to be able to fail) ---


def pod_security_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    if pod_sc.get("runAsUser") != APP_UID:
        problems.append(f"pod securityContext.runAsUser is {pod_sc.get('runAsUser')!r}, not {APP_UID}")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("service account token is mounted")
    if spec.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false (STRONGROOM_PORT=tcp://... would be injected)")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{flag} is set")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']} is a hostPath")
    init_names = {c["name"] for c in spec.get("initContainers", [])}
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        name = container["name"]
        writable = WRITABLE_PATHS | ({KEYS_DIR} if name in init_names else set())
        sc = container.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("runAsNonRoot") is False or sc.get("runAsUser", APP_UID) == 0:
            problems.append(f"{name}: runs as root")
        caps = sc.get("capabilities") or {}
        if caps.get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop is {caps.get('drop')!r}, not ['ALL']")
        if caps.get("add"):
            problems.append(f"{name}: adds capabilities {caps['add']!r}")
        for mount in container.get("volumeMounts", []):
            if not mount.get("readOnly") and mount["mountPath"] not in writable:
                problems.append(f"{name}: writable mount at {mount['mountPath']}")
    return problems


SECRETISH_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|DATABASE_URL|_DSN|CREDENTIAL|PRIVATE)", re.IGNORECASE)


def secret_value_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Secrets must be referenced by name only: no Secret objects, no secret-looking literals."""
    problems = []
    for obj in objects:
        if obj["kind"] == "Secret":
            keys = sorted({**(obj.get("data") or {}), **(obj.get("stringData") or {})})
            problems.append(f"Secret {obj['metadata']['name']} is rendered (keys: {keys})")
        if obj["kind"] == "ConfigMap":
            text = json.dumps(obj.get("data") or {})
            if re.search(r"(postgres(ql)?(\+\w+)?://|password|BEGIN [A-Z ]*PRIVATE KEY)", text, re.IGNORECASE):
                problems.append(f"ConfigMap {obj['metadata']['name']} holds secret-looking data")
    for key, spec in pod_specs(objects).items():
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            for item in container.get("env", []):
                if SECRETISH_ENV.search(item["name"]) and "value" in item:
                    problems.append(f"{key}/{container['name']}: {item['name']} has a literal value")
    return problems


# --- Helm lint and Kubernetes schema validation ------------------------------------------------


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_helm_lint_is_clean(set_name: str) -> None:
    report = helm.lint(CHART_DIR, VALUE_SETS[set_name], strict=True, kube_version=f"v{KUBE_VERSION}.0")
    # Severity 1 is INFO ("icon is recommended"); warnings (2) and errors (3) fail.
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1
    assert findings == [], findings
    assert report["errors"] == []


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_every_object_matches_the_kubernetes_schema(set_name: str) -> None:
    objects = render(set_name)
    assert objects, "the chart rendered nothing"
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{set_name}: {name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{set_name}: {name}: {exc.message}")
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "strongroom", name
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, name
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", name


def test_schema_validation_catches_a_misspelt_field_deep_in_a_pod() -> None:
    deployment = one(render("defaults"), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


# --- security of the pods ---------------------------------------------------------------------


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_every_pod_is_non_root_read_only_and_unprivileged(set_name: str) -> None:
    objects = render(set_name)
    specs = pod_specs(objects)
    expected = {"Deployment"}
    values = VALUE_SETS[set_name]
    restoring = values.get("restore", {}).get("file")
    if values.get("migrations", {}).get("enabled", True) or restoring:
        expected.add("Job")
    scheduled = [values.get("backup", {}).get("enabled", True), values.get("auditArchive", {}).get("enabled", False),
                 values.get("backupVerify", {}).get("enabled", False)]
    if any(scheduled) and not restoring:
        expected.add("CronJob")
    assert {key.split("/")[0] for key in specs} == expected
    for key, spec in specs.items():
        assert pod_security_problems(spec) == [], key


def test_pod_checker_flags_an_insecure_pod() -> None:
    spec = copy.deepcopy(pod_specs(render("defaults"))[f"Deployment/{RELEASE}"])
    assert pod_security_problems(spec) == []
    spec["securityContext"]["runAsUser"] = 0
    spec["enableServiceLinks"] = True
    container = spec["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"], "add": ["NET_ADMIN"]}
    container["volumeMounts"].append({"name": "config", "mountPath": "/opt/strongroom"})
    problems = " | ".join(pod_security_problems(spec))
    for expected in ("runAsUser", "enableServiceLinks", "root filesystem", "drop", "adds", "/opt/strongroom"):
        assert expected in problems


def database_logins(objects: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, str]:
    """Which login each pod's STRONGROOM_DATABASE_URL comes from ("owner", "runtime" or the Secret's name)."""
    database = values.get("database", {})
    runtime = database.get("runtime", {})
    login_by_secret = {
        (database.get("existingSecret") or f"{RELEASE}-database", database.get("existingSecretKey", "url")): "owner",
        (runtime.get("existingSecret") or f"{RELEASE}-database-runtime", runtime.get("existingSecretKey", "url")):
            "runtime",
    }
    logins = {}
    for key, spec in pod_specs(objects).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            url = env_of(container).get("STRONGROOM_DATABASE_URL")
            if url is not None:
                ref = url["valueFrom"]["secretKeyRef"]
                logins[f"{key}/{container['name']}"] = login_by_secret.get((ref["name"], ref["key"]), ref["name"])
    return logins


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_only_the_migration_hook_logs_in_as_the_schema_owner(set_name: str) -> None:
    """The owner can disable the audit triggers: the server and the backup job log in as the runtime role; only the
    migration hook, the audit archive job (which deletes archived events) and the backup verification job (which
    creates a scratch database) as the owner."""
    values = VALUE_SETS[set_name]
    logins = database_logins(render(set_name), values)
    expected = {f"Deployment/{RELEASE}/strongroom": "runtime"}
    if values.get("migrations", {}).get("enabled", True):
        expected[f"Job/{RELEASE}-migrate/migrate"] = "owner"
    restoring = values.get("restore", {}).get("file")
    if values.get("backup", {}).get("enabled", True) and not restoring:
        expected[f"CronJob/{RELEASE}-backup/backup"] = "runtime"
    if values.get("auditArchive", {}).get("enabled", False) and not restoring:
        expected[f"CronJob/{RELEASE}-audit-archive/audit-archive"] = "owner"
    if values.get("backupVerify", {}).get("enabled", False) and not restoring:
        expected[f"CronJob/{RELEASE}-backup-verify/backup-verify"] = "owner"
    if restoring:
        (job,) = [name for name in pod_specs(render(set_name)) if name.startswith(f"Job/{RELEASE}-restore-")]
        expected[f"{job}/restore"] = "owner"
    assert logins == expected


def test_login_checker_tells_the_owner_from_the_runtime_role() -> None:
    objects = render("external-postgresql")
    deployment = one(objects, "Deployment")
    url = env_of(deployment["spec"]["template"]["spec"]["containers"][0])["STRONGROOM_DATABASE_URL"]
    url["valueFrom"]["secretKeyRef"] = {"name": "crm-db-credentials", "key": "DATABASE_URL"}
    assert database_logins(objects, VALUE_SETS["external-postgresql"])[f"Deployment/{RELEASE}/strongroom"] == "owner"
    # The runtime Secret's name with the owner's key is neither login.
    url["valueFrom"]["secretKeyRef"] = {"name": "crm-db-runtime", "key": "DATABASE_URL"}
    assert database_logins(objects, VALUE_SETS["external-postgresql"])[
        f"Deployment/{RELEASE}/strongroom"] == "crm-db-runtime"


def test_notes_name_both_database_secrets(chart: Any) -> None:
    for set_name, owner, runtime in (("defaults", f"{RELEASE}-database", f"{RELEASE}-database-runtime"),
                                     ("external-postgresql", "crm-db-credentials", "crm-db-runtime")):
        manifests = chart.render(VALUE_SETS[set_name], name=RELEASE, namespace=NAMESPACE, is_install=True)
        notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
        assert re.search(rf"^  - {re.escape(owner)}  key .*OWNER:PASSWORD", notes, re.MULTILINE), notes
        assert re.search(rf"^  - {re.escape(runtime)}  key .*RUNTIME:PASSWORD", notes, re.MULTILINE), notes


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_secrets_are_referenced_by_name_only(set_name: str) -> None:
    objects = render(set_name)
    assert secret_value_problems(objects) == []
    for key, spec in pod_specs(objects).items():
        secret_volumes = [v for v in spec["volumes"] if "secret" in v]
        if key.startswith("Job/") and "-restore-" not in key:  # the migration hook needs the database only
            assert secret_volumes == [], key
            assert "initContainers" not in spec, key
            continue
        assert [v["name"] for v in secret_volumes] == ["keyring-secret"], key
        expected = VALUE_SETS[set_name].get("keyring", {}).get("existingSecret") or f"{RELEASE}-keyring"
        assert secret_volumes[0]["secret"] == {"secretName": expected, "defaultMode": 0o440}, key
        # Only the init container sees the Secret itself; the server reads the 0600 copies.
        for c in spec["containers"]:
            assert all(m["name"] != "keyring-secret" for m in c["volumeMounts"]), key


def test_secret_checker_flags_inline_secrets() -> None:
    objects = render("defaults")
    objects.append({"kind": "Secret", "metadata": {"name": "x"}, "data": {"url": "cG9zdGdyZXM="}})
    deployment = one(objects, "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "PGPASSWORD", "value": "hunter2"})
    problems = " | ".join(secret_value_problems(objects))
    assert "Secret x" in problems
    assert "PGPASSWORD" in problems


# --- the application contract -----------------------------------------------------------------


def test_server_pod_follows_the_application_contract() -> None:
    objects = render("defaults")
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["strongroom"]
    assert container["args"] == ["serve"]
    env = env_of(container)
    assert env["STRONGROOM_HOST"]["value"] == "0.0.0.0"
    assert env["STRONGROOM_PORT"]["value"] == "8000"
    assert env["STRONGROOM_DATA_DIR"]["value"] == "/var/lib/strongroom"
    assert env["STRONGROOM_KEYS_DIR"]["value"] == "/etc/strongroom/keys"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in volumes[mounts["/var/lib/strongroom"]["name"]]
    keys = mounts[KEYS_DIR]
    assert keys["readOnly"] is True
    # Memory-backed: the copied key files never reach the node's disk.
    assert volumes[keys["name"]]["emptyDir"]["medium"] == "Memory"
    (init,) = spec["initContainers"]
    init_mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert init_mounts[KEYS_DIR]["name"] == keys["name"]
    assert init_mounts[KEYS_DIR].get("readOnly") is not True
    assert "secret" in volumes[init_mounts[SECRET_STAGING_DIR]["name"]]
    config_mount = mounts[str(Path(env["STRONGROOM_CONFIG"]["value"]).parent)]
    assert volumes[config_mount["name"]]["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]

    # The erasure ledger: on a kept claim, writable by the server (an erasure appends to it), apart from the
    # database, where STRONGROOM_ERASURE_LEDGER_PATH points; the backup job reads the same claim.
    ledger_path = Path(env["STRONGROOM_ERASURE_LEDGER_PATH"]["value"])
    ledger_mount = mounts[str(ledger_path.parent)]
    assert ledger_mount.get("readOnly") is not True
    claim = volumes[ledger_mount["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = next(pvc for pvc in by_kind(objects, "PersistentVolumeClaim") if pvc["metadata"]["name"] == claim)
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    backup_spec = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (backup,) = backup_spec["containers"]
    assert env_of(backup)["STRONGROOM_ERASURE_LEDGER_PATH"]["value"] == str(ledger_path)
    backup_mount = next(m for m in backup["volumeMounts"] if m["mountPath"] == str(ledger_path.parent))
    assert {v["name"]: v for v in backup_spec["volumes"]}[backup_mount["name"]]["persistentVolumeClaim"] == {
        "claimName": claim}

    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def _fake_secret_volume(root: Path, files: dict[str, bytes]) -> Path:
    """The layout the kubelet writes for a Secret volume: a timestamped dir, ..data, and symlinks to it."""
    root.mkdir()
    payload = root / "..2026_01_01_00_00_00.000000001"
    payload.mkdir()
    for name, content in files.items():
        (payload / name).write_bytes(content)
        (payload / name).chmod(0o440)  # defaultMode 0440 (group read added by fsGroup anyway)
    (root / "..data").symlink_to(payload.name)
    for name in files:
        (root / name).symlink_to(f"..data/{name}")
    return root


def test_install_keys_init_container_yields_files_the_application_accepts(tmp_path: Path) -> None:
    """Run the rendered init-container command against a Secret-like volume, then load the key as the app does."""
    from server.security.identity.tokens import SIGNING_KEY_FILE, load_or_create_signing_key

    spec = pod_specs(render("defaults"))[f"Deployment/{RELEASE}"]
    (init,) = spec["initContainers"]
    assert init["command"][:2] == ["sh", "-ec"]
    script = init["command"][2]
    secret_dir = _fake_secret_volume(tmp_path / "secret", {SIGNING_KEY_FILE: b"k" * 64, "keyring.json": b"{}"})
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    script = script.replace(SECRET_STAGING_DIR, str(secret_dir)).replace(KEYS_DIR, str(keys_dir))

    # As mounted, the Secret's files are group-readable and the application refuses them ...
    with pytest.raises(PermissionError):
        load_or_create_signing_key(secret_dir, create=False)
    subprocess.run(["sh", "-ec", script], check=True)
    # ... the installed copies are regular 0600 files, no ..data internals, and are accepted.
    assert sorted(p.name for p in keys_dir.iterdir()) == sorted([SIGNING_KEY_FILE, "keyring.json"])
    for path in keys_dir.iterdir():
        assert path.is_file() and not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_signing_key(keys_dir, create=False) == b"k" * 64

    # An empty Secret fails the init container (and so the pod) instead of starting without keys.
    empty = _fake_secret_volume(tmp_path / "empty", {})
    failing = init["command"][2].replace(SECRET_STAGING_DIR, str(empty)).replace(KEYS_DIR, str(tmp_path / "k2"))
    (tmp_path / "k2").mkdir()
    assert subprocess.run(["sh", "-ec", failing], capture_output=True, check=False).returncode != 0


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_rendered_settings_are_accepted_by_the_application(set_name: str, tmp_path: Path) -> None:
    """The ConfigMap's TOML plus the literal env must load through server.config without error."""
    objects = render(set_name)
    config_map = one(objects, "ConfigMap")
    toml_text = config_map["data"]["strongroom.toml"]
    parsed = tomllib.loads(toml_text)
    assert set(parsed) <= {f.name for f in dataclasses.fields(Settings)}
    config_file = tmp_path / "strongroom.toml"
    config_file.write_text(toml_text)

    deployment = one(objects, "Deployment")
    env = {
        name: item["value"]
        for name, item in env_of(deployment["spec"]["template"]["spec"]["containers"][0]).items()
        if "value" in item
    }
    env["STRONGROOM_CONFIG"] = str(config_file)
    env["STRONGROOM_DATABASE_URL"] = "postgresql+asyncpg://u:p@db:5432/crm"  # from the Secret in the cluster
    settings = load_settings(environ=env)
    assert (settings.host, settings.port, settings.data_dir) == ("0.0.0.0", 8000, "/var/lib/strongroom")
    assert settings.max_body_bytes == 1048576  # a large integer survives Helm's float64 values
    assert str(settings.resolved_keys_dir) == "/etc/strongroom/keys"


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook() -> None:
    job = one(render("defaults"), "Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"] + container["args"] == ["strongroom", "migrate"]
    # On a first install the chart's own ServiceAccount does not exist yet when hooks run.
    assert "serviceAccountName" not in spec
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_backup_cronjob_writes_to_a_kept_volume() -> None:
    objects = render("defaults")
    cronjob = one(objects, "CronJob")
    assert cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] + container["args"] == [
        "strongroom", "backup", "create", "--out", "/backups", "--prune"]
    backups = next(m for m in container["volumeMounts"] if m["mountPath"] == "/backups")
    claim = next(v for v in spec["volumes"] if v["name"] == backups["name"])["persistentVolumeClaim"]["claimName"]
    pvc = next(pvc for pvc in by_kind(objects, "PersistentVolumeClaim") if pvc["metadata"]["name"] == claim)
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    external = render("external-postgresql")
    assert by_kind(external, "PersistentVolumeClaim") == []
    spec = one(external, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "crm-backups"}} in spec["volumes"]
    assert {"name": "erasure-ledger", "persistentVolumeClaim": {"claimName": "crm-erasure-ledger"}} in spec["volumes"]


def _mounted_claim(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """The claim mounted at ``path`` in ``container`` of pod ``spec``, and the mount."""
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    return volume["persistentVolumeClaim"]["claimName"], mount


def test_audit_files_live_on_a_kept_claim_every_pod_shares() -> None:
    """The checkpoint sink and the archive directory outlive the pods; the servers append checkpoints there, the
    backup job reads it (read-only)."""
    objects = render("defaults")
    env = env_of(one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    sink = Path(env["STRONGROOM_AUDIT_CHECKPOINT_SINK"]["value"])
    archive = Path(env["STRONGROOM_AUDIT_ARCHIVE_DIR"]["value"])
    assert sink.parent == archive.parent == Path("/var/lib/strongroom-audit")
    specs = pod_specs(objects)
    server = specs[f"Deployment/{RELEASE}"]
    claim, mount = _mounted_claim(server, server["containers"][0], str(sink.parent))
    assert mount.get("readOnly") is not True
    pvc = next(pvc for pvc in by_kind(objects, "PersistentVolumeClaim") if pvc["metadata"]["name"] == claim)
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    backup = specs[f"CronJob/{RELEASE}-backup"]
    assert _mounted_claim(backup, backup["containers"][0], str(sink.parent)) == (
        claim, {"name": mount["name"], "mountPath": str(sink.parent), "readOnly": True})
    # Off by default: nothing leaves the database until the operator chooses a retention.
    assert f"CronJob/{RELEASE}-audit-archive" not in specs


def test_audit_archive_job_runs_as_the_owner_onto_the_audit_claim(tmp_path: Path) -> None:
    values = VALUE_SETS["audit-archive"]
    objects = render("audit-archive")
    # An existing claim is used, not created.
    assert not [pvc for pvc in by_kind(objects, "PersistentVolumeClaim") if "audit" in pvc["metadata"]["name"]]
    cronjob = next(c for c in by_kind(objects, "CronJob") if c["metadata"]["name"] == f"{RELEASE}-audit-archive")
    assert cronjob["spec"]["schedule"] == "15 4 * * 0"
    assert cronjob["spec"]["timeZone"] == "Asia/Shanghai"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] + container["args"] == ["strongroom", "audit", "archive"]
    env = env_of(container)
    archive_dir = env["STRONGROOM_AUDIT_ARCHIVE_DIR"]["value"]
    claim, mount = _mounted_claim(spec, container, str(Path(archive_dir).parent))
    assert claim == "crm-audit-files" and mount.get("readOnly") is not True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {KEYS_DIR}  # it signs the archive's checkpoint
    # The retention it applies is the rendered settings file's, and the application accepts that file.
    config = tomllib.loads(one(objects, "ConfigMap")["data"]["strongroom.toml"])
    assert config["audit_retention_days"] == values["config"]["audit_retention_days"]
    # Long names stay within a CronJob's 52 characters.
    with helm.Chart.load(CHART_DIR) as loaded:
        long = loaded.render(values, name="x" * 53, namespace=NAMESPACE, is_install=True)
    names = [doc["metadata"]["name"] for path, text in long.items() if path.endswith(".yaml")
             for doc in yaml.safe_load_all(text) if doc and doc.get("kind") == "CronJob"]
    archive_jobs = [name for name in names if name.endswith("-audit-archive")]
    assert archive_jobs and all(len(name) <= 52 for name in archive_jobs)


def test_backup_verify_job_runs_as_the_owner_with_the_backups_read_only() -> None:
    """backupVerify: weekly by default, `backup verify --latest` on the backups claim (the backup job's, mounted
    read-only) as the schema owner from database.existingSecret, with the keys; no ledger or audit files."""
    values = VALUE_SETS["backup-verify"]
    objects = render("backup-verify")
    cronjobs = {c["metadata"]["name"]: c for c in by_kind(objects, "CronJob")}
    cronjob = cronjobs[f"{RELEASE}-backup-verify"]
    assert cronjob["spec"]["schedule"] == "15 6 * * 1"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"  # the backup's, unless backupVerify.timeZone is set
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0  # a bad backup fails the Job at once
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    # --max-age 48 by default: a good but old newest backup (backups stopped) fails the Job too.
    assert container["command"] + container["args"] == ["strongroom", "backup", "verify", "--latest", "--dir",
                                                         "/backups", "--max-age", "48"]
    assert env_of(container)["STRONGROOM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "crm-db-owner", "key": "OWNER_URL"}
    backup = cronjobs[f"{RELEASE}-backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    backup_claim, backup_mount = _mounted_claim(backup, backup["containers"][0], "/backups")
    claim, mount = _mounted_claim(spec, container, "/backups")
    assert claim == backup_claim and backup_mount.get("readOnly") is not True and mount["readOnly"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert KEYS_DIR in mounts and mounts[KEYS_DIR]["readOnly"] is True
    env = env_of(container)
    for unneeded in (env["STRONGROOM_ERASURE_LEDGER_PATH"]["value"], env["STRONGROOM_AUDIT_ARCHIVE_DIR"]["value"]):
        assert not any(Path(path) in Path(unneeded).parents for path in mounts), unneeded
    assert {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")} == {
        "/tmp", "/var/lib/strongroom"}  # scratch emptyDirs only: the backup streams into the scratch database
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {backup_claim}

    # Off by default; an existing claim is enough without the backup job, and nothing to read is an error.
    assert f"CronJob/{RELEASE}-backup-verify" not in pod_specs(render("defaults"))
    existing = {c["metadata"]["name"]: c for c in by_kind(render("backup-verify-existing-claim"), "CronJob")}
    assert list(existing) == [f"{RELEASE}-backup-verify"]
    assert existing[f"{RELEASE}-backup-verify"]["spec"]["timeZone"] == "Asia/Shanghai"
    other = existing[f"{RELEASE}-backup-verify"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert _mounted_claim(other, other["containers"][0], "/backups")[0] == "crm-backups"
    assert other["containers"][0]["args"] == ["backup", "verify", "--latest", "--dir", "/backups"]  # maxAgeHours 0
    with helm.Chart.load(CHART_DIR) as loaded:
        with pytest.raises(helm.HelmError, match=r"backupVerify\.enabled needs the backups claim"):
            loaded.render({"backupVerify": {"enabled": True}, "backup": {"enabled": False}}, name=RELEASE,
                          namespace=NAMESPACE)
        # Long names stay within a CronJob's 52 characters.
        long = loaded.render(values, name="x" * 53, namespace=NAMESPACE, is_install=True)
        notes = next(text for path, text in loaded.render(values, name=RELEASE, namespace=NAMESPACE).items()
                     if path.endswith("NOTES.txt"))
    names = [doc["metadata"]["name"] for path, text in long.items() if path.endswith(".yaml")
             for doc in yaml.safe_load_all(text) if doc and doc.get("kind") == "CronJob"]
    verify_jobs = [name for name in names if name.endswith("-backup-verify")]
    assert verify_jobs and all(len(name) <= 52 for name in verify_jobs)
    assert f"CronJob {RELEASE}-backup-verify" in notes and "CREATEDB" in notes
    # Its pods get the Job pods' NetworkPolicy: no way in, DNS and the database out.
    jobs_policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == f"{RELEASE}-jobs")
    (component,) = [e for e in jobs_policy["spec"]["podSelector"]["matchExpressions"]
                    if e["key"] == "app.kubernetes.io/component"]
    assert "backup-verify" in component["values"]
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/component"] == "backup-verify"


def test_a_restore_runs_as_the_owner_while_no_server_runs() -> None:
    """restore.file: the servers scaled to 0 (no HPA to scale them back, no scheduled job writing), and one Job per
    file running `backup restore` as the owner with the claims a restore writes to."""
    values = VALUE_SETS["restore"]
    objects = render("restore")
    assert one(objects, "Deployment")["spec"]["replicas"] == 0
    assert by_kind(objects, "HorizontalPodAutoscaler") == [] and by_kind(objects, "CronJob") == []
    job = next(j for j in by_kind(objects, "Job") if j["metadata"]["name"].startswith(f"{RELEASE}-restore-"))
    assert len(job["metadata"]["name"]) <= 63 and job["spec"]["backoffLimit"] == 0
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] + container["args"] == [
        "strongroom", "backup", "restore", f"/backups/{values['restore']['file']}", "--yes"]
    env = env_of(container)
    ledger_dir = str(Path(env["STRONGROOM_ERASURE_LEDGER_PATH"]["value"]).parent)
    audit_dir = str(Path(env["STRONGROOM_AUDIT_ARCHIVE_DIR"]["value"]).parent)
    for path, writable in (("/backups", False), (ledger_dir, True), (audit_dir, True)):
        _claim, mount = _mounted_claim(spec, container, path)
        assert (mount.get("readOnly") is not True) == writable, path
    assert KEYS_DIR in {m["mountPath"] for m in container["volumeMounts"]}
    # It starts only once the servers this upgrade scales down have had their grace period to finish.
    wait = spec["initContainers"][0]
    assert wait["command"] == ["sleep", str(one(objects, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] + 10)]
    # Another file is another Job (a Job cannot be changed); no file, no Job and the servers as configured.
    other = copy.deepcopy(values)
    other["restore"]["file"] = "strongroom-20261208T020000Z-4d5e6f.srbk"
    with helm.Chart.load(CHART_DIR) as loaded:
        rendered = loaded.render(other, name=RELEASE, namespace=NAMESPACE)
        assert job["metadata"]["name"] not in "".join(rendered.values())
        with pytest.raises(helm.HelmError, match=r"restore\.file needs the backups claim"):
            loaded.render({"restore": {"file": "strongroom-x.srbk"}, "backup": {"enabled": False}},
                          name=RELEASE, namespace=NAMESPACE)
    assert not [j for j in by_kind(render("defaults"), "Job") if "restore" in j["metadata"]["name"]]


def test_autoscaling_owns_the_replica_count() -> None:
    objects = render("hpa")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    deployment = one(objects, "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]
    assert one(objects, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": "25%",
        "selector": deployment["spec"]["selector"],
    }
    assert by_kind(render("defaults"), "HorizontalPodAutoscaler") == []
    assert one(render("defaults"), "Deployment")["spec"]["replicas"] == 2


def test_no_disruption_budget_for_a_single_replica() -> None:
    # minAvailable: 1 with one replica would block every node drain.
    assert by_kind(render("single-replica-minimal"), "PodDisruptionBudget") == []
    assert one(render("defaults"), "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_ingress_with_tls() -> None:
    objects = render("ingress-tls")
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "crm-example-tls", "hosts": ["crm.example.com", "crm-api.example.com"]},
    ]
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {one(objects, "Service")["metadata"]["name"]}


def test_ingress_off_renders_no_ingress() -> None:
    assert by_kind(render("ingress-off"), "Ingress") == []
    assert by_kind(render("defaults"), "Ingress") == []


def _egress_ports(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policy_admits_only_the_ingress_controller_and_reaches_only_dns_and_database() -> None:
    objects = render("defaults")
    policies = {p["metadata"]["name"]: p for p in by_kind(objects, "NetworkPolicy")}
    server = policies[RELEASE]
    jobs = policies[f"{RELEASE}-jobs"]
    for policy in (server, jobs):
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert _egress_ports(policy) == {("UDP", 53), ("TCP", 53), ("TCP", 5432)}
        for rule in policy["spec"]["egress"]:
            for peer in rule["to"]:
                # An empty namespaceSelector would match every namespace.
                assert peer.get("namespaceSelector", {"x": 1}) != {}
    assert "ingress" not in jobs["spec"]  # deny all inbound to Job pods
    (rule,) = server["spec"]["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert server["spec"]["podSelector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and matchExpressions with operator In) selects ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("set_name", [name for name, values in VALUE_SETS.items()
                                      if values.get("networkPolicy", {}).get("enabled", True)])
def test_every_pod_the_chart_runs_is_under_a_network_policy(set_name: str) -> None:
    """A pod no NetworkPolicy selects may reach anything: every Deployment, Job and CronJob pod must be selected."""
    objects = render(set_name)
    selectors = [policy["spec"]["podSelector"] for policy in by_kind(objects, "NetworkPolicy")]
    for obj in objects:
        if obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        elif obj["kind"] in {"Deployment", "Job"}:
            template = obj["spec"]["template"]
        else:
            continue
        labels = template["metadata"]["labels"]
        assert any(_selects(selector, labels) for selector in selectors), f"{obj['kind']}/{obj['metadata']['name']}"


def test_network_policy_for_an_external_database() -> None:
    policies = by_kind(render("external-postgresql"), "NetworkPolicy")
    assert len(policies) == 2
    for policy in policies:
        db_rule = next(r for r in policy["spec"]["egress"] if ("TCP", 6432) in _egress_ports({"spec": {"egress": [r]}}))
        assert db_rule["to"] == [{"ipBlock": {"cidr": "10.20.30.0/24"}}, {"ipBlock": {"cidr": "10.20.31.7/32"}}]
    assert (
        len(
            one([p for p in render("ingress-off") if p["metadata"]["name"] == RELEASE], "NetworkPolicy")["spec"][
                "ingress"
            ]
        )
        == 2
    )  # controller + metrics scraper
    assert by_kind(render("single-replica-minimal"), "NetworkPolicy") == []


# --- values.schema.json -----------------------------------------------------------------------


def test_values_schema_is_valid_draft7() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_values_schema_accepts_the_supported_value_sets(chart: Any, set_name: str) -> None:
    chart.validate_schema(VALUE_SETS[set_name])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicas": 3}, "replicas"),  # a typo of replicaCount
        ({"config": {"log_levl": "INFO"}}, "log_levl"),
        ({"config": {"log_level": "VERBOSE"}}, "/config/log_level"),
        ({"config": {"token_ttl_seconds": 10}}, "/config/token_ttl_seconds"),
        ({"config": {"database_url": "postgresql+asyncpg://u:p@h/db"}}, "database_url"),  # secrets never in values
        ({"database": {"existingSecret": "Crm_DB"}}, "/database/existingSecret"),
        ({"database": {"password": "hunter2"}}, "password"),
        ({"database": {"runtime": {"existingSecret": "Crm_Runtime"}}}, "/database/runtime/existingSecret"),
        ({"database": {"runtime": {"url": "postgresql+asyncpg://u:p@h/db"}}}, "url"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"ingress": {"tls": {"enabeld": True}}}, "enabeld"),
        ({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
        ({"backup": {"schedule": "nightly"}}, "/backup/schedule"),
        ({"backupVerify": {"schedule": "weekly"}}, "/backupVerify/schedule"),
        ({"backupVerify": {"enabeld": True}}, "enabeld"),
        ({"backupVerify": {"backoffLimit": -1}}, "/backupVerify/backoffLimit"),
        ({"restore": {"file": "../../etc/passwd.srbk"}}, "/restore/file"),
        ({"restore": {"file": "dump.sql"}}, "/restore/file"),
        ({"networkPolicy": {"database": {"cidrs": ["db.example.com"]}}}, "/networkPolicy/database/cidrs"),
    ],
)
def test_values_schema_rejects_bad_values(chart: Any, values: dict[str, Any], expected: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)
    assert expected in str(caught.value)
    # An install (render) is refused too, not only an explicit schema check.
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# --- Dockerfile -------------------------------------------------------------------------------


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments)


def parse_dockerfile(text: str) -> list[Stage]:
    """A small Dockerfile reader: comments dropped, continuations joined, ARG defaults substituted in FROM."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comment lines, also inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            lines.append(line)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "ARG" and not stages and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
        elif instruction == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return stages


COMPILER_PACKAGES = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3-dev|libc6-dev|cargo|rustc)\b")


# The one package the runtime image adds: PostgreSQL's client tools, which `strongroom backup` runs.
RUNTIME_PACKAGES = frozenset({"postgresql-client"})


def _apt_packages(run: str) -> set[str]:
    packages: set[str] = set()
    for command in re.split(r"&&|;", run):
        words = command.split()
        if "install" in words and words[0] in {"apt-get", "apt"}:
            packages.update(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
    return packages


def _exec_form(args: str | None) -> Any:
    try:
        return json.loads(args or "null")
    except json.JSONDecodeError:
        return None


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return ["not a multi-stage build"]
    final = stages[-1]
    if not re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", final.base):
        problems.append(f"final base image is {final.base}")
    if final.base != stages[0].base:
        problems.append("builder and final stage use different bases (the venv's python symlink would break)")
    users = [args for instruction, args in final.instructions if instruction == "USER"]
    if not users:
        problems.append("final stage has no USER (runs as root)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit():
            problems.append(f"final USER {users[-1]!r} is not numeric (runAsNonRoot cannot verify a name)")
        elif int(uid) == 0:
            problems.append("final USER is root")
        elif int(uid) != APP_UID:
            problems.append(f"final USER {uid} does not match the chart's runAsUser {APP_UID}")
    for instruction, args in final.instructions:
        if instruction == "RUN" and COMPILER_PACKAGES.search(args):
            problems.append(f"final stage installs a compiler: {args}")
        if instruction == "RUN" and re.search(r"\bapt(-get)? install\b", args):
            installed = _apt_packages(args)
            if not installed <= RUNTIME_PACKAGES or "--no-install-recommends" not in args:
                problems.append(f"final stage installs packages beyond {sorted(RUNTIME_PACKAGES)}: {args}")
        if instruction in {"COPY", "ADD"}:
            words = args.split()
            if not any(w.startswith("--from=") for w in words):
                problems.append(f"final stage copies from the build context: {args}")
            elif words[-2:] != ["/opt/strongroom", "/opt/strongroom"]:
                problems.append(f"final stage copies more than the venv: {args}")
    final_args = dict(final.instructions)
    # Exec form (a JSON array) only: the shell form would run under /bin/sh and swallow SIGTERM.
    if _exec_form(final_args.get("ENTRYPOINT")) != ["strongroom"]:
        problems.append('ENTRYPOINT is not ["strongroom"]')
    if _exec_form(final_args.get("CMD")) != ["serve"]:
        problems.append('CMD is not ["serve"]')
    if "8000" not in shlex.split(final_args.get("EXPOSE", "")):
        problems.append("port 8000 is not exposed")
    return problems


def test_dockerfile_is_multi_stage_non_root_and_compiler_free() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerfile_checker_flags_a_bad_dockerfile() -> None:
    bad = (
        "FROM python:3.11-slim AS builder\nRUN pip wheel .\n"
        "FROM python:3.11-slim\nRUN apt-get update && \\\n    apt-get install -y gcc\nCOPY . /app\n"
        "USER strongroom\nENTRYPOINT strongroom serve\n"
    )
    problems = " | ".join(dockerfile_problems(bad))
    for expected in ("installs a compiler", "installs packages beyond", "build context", "not numeric",
                     "ENTRYPOINT", "8000"):
        assert expected in problems
    assert dockerfile_problems("FROM python:3.11-slim\nUSER 10001\n") == ["not a multi-stage build"]
    assert "root" in " ".join(dockerfile_problems("FROM python:3.11-slim AS b\nFROM python:3.11-slim\nUSER 0:0\n"))


def test_the_image_has_the_postgresql_tools_backups_run() -> None:
    final = parse_dockerfile(DOCKERFILE.read_text())[-1]
    installed = set().union(*(_apt_packages(args) for instruction, args in final.instructions if instruction == "RUN"))
    assert "postgresql-client" in installed  # pg_dump / pg_restore / psql for `strongroom backup` (the CronJob)


def test_dockerignore_is_an_allow_list() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    # Everything is excluded first, so var/ (SQLite, keys, backups), .venv and .git never reach the image.
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "server"}
    copied = {
        word.rstrip("/")
        for instruction, args in parse_dockerfile(DOCKERFILE.read_text())[0].instructions
        if instruction == "COPY"
        for word in args.split()[:-1]
        if not word.startswith("--")
    }
    assert copied <= allowed, f"the builder copies {copied - allowed} which .dockerignore excludes"
