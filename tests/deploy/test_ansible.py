"""The Ansible packaging: deploy/ansible (role ``strongroom``, playbook ``site.yml``, example inventories).

Two checks:

* ``ansible-lint`` on the production profile, offline, and only ``ansible.builtin`` modules (Galaxy is not
  reachable from CI or from air-gapped sites, so the role needs no collection).
* The real playbook against this machine (``connection: local``), with every path under a temporary root:
  the role builds the wheel from a copy of the source (the second scenario is handed that wheel as
  ``strongroom_wheel_src`` instead), installs it with its dependencies from an offline wheelhouse into a
  virtualenv shared by both scenarios, creates the service user, writes config, keys and units, runs
  ``strongroom migrate`` and ``strongroom init``. There is no systemd here, so the test starts the rendered
  unit's ``ExecStart`` itself, with the unit's ``User=``, ``Environment=``, ``WorkingDirectory=`` and
  ``UMask=``, under ``no_new_privs``, the kernel's ``PR_SET_MDWE`` and the unit's ``SystemCallFilter=``
  compiled to seccomp by libseccomp (what ``NoNewPrivileges=``, ``MemoryDenyWriteExecute=`` and the filter
  enforce), waits for ``/health/ready`` and signs in as the admin. A second run must change nothing.
  Once on SQLite, once on PostgreSQL (the database play creates the roles and the database through psql; the
  server, init and backups log in as the runtime role, only the migration as the schema owner).
* The database play on its own against this machine's PostgreSQL: the runtime login it creates can work on
  the CRM tables but cannot change or unprotect the audit trail, while `strongroom init` and `strongroom backup
  create` work as that login; a second run changes nothing; a schema migrated before strongroom_app existed
  gets the grants the migrations would have made.

Packages, services, nginx and journald are not touched on this machine: ``strongroom_manage_packages`` and
``strongroom_manage_services`` are off; the nginx, logrotate and journald files are rendered into the
temporary root and checked with ``nginx -t`` / ``logrotate -d`` where those programs exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import grp
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import jinja2
import pytest
import yaml

from server.config import load_settings
from server.db import migrate

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "deploy" / "ansible"
VENV_BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [name.strip() for name in os.environ.get("STRONGROOM_TEST_BACKENDS", "sqlite,postgresql").split(",")]
SERVICE_USER = "strongroom-ci"
SIGNING_KEY_FILE = "token-signing.key"

# What the rendered unit must keep (systemd.exec(5)); a missing line here is a weaker sandbox.
REQUIRED_HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "MemoryDenyWriteExecute": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

pytestmark = pytest.mark.slow


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; ansible-core and ansible-lint are test extras")
    return str(path)


def _ansible_env(home: Path) -> dict[str, str]:
    """A clean environment for Ansible: no colours, no writes to ~/.ansible, no machine-wide pip find-links."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "PIP_FIND_LINKS"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_DISPLAY_SKIPPED_HOSTS="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        NO_COLOR="1",
    )
    return env


# --------------------------------------------------------------------------------------------- lint


def test_ansible_lint_production_profile_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [_tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor", "."],
        cwd=ANSIBLE_DIR, env=_ansible_env(tmp_path), capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


def test_postgresql_hosts_get_the_client_tools_backups_run() -> None:
    """`strongroom backup` runs pg_dump/pg_restore/psql: app hosts on PostgreSQL install them on both families."""
    role = ANSIBLE_DIR / "roles" / "strongroom"
    tasks = yaml.safe_load((role / "tasks" / "packages.yml").read_text())
    (task,) = [t for t in tasks if "strongroom__os_postgresql_client_packages" in str(t)]
    assert task["when"] == "strongroom_db_backend == 'postgresql'"
    for family, package in (("Debian", "postgresql-client"), ("RedHat", "postgresql")):
        variables = yaml.safe_load((role / "vars" / f"{family}.yml").read_text())
        assert variables["strongroom__os_postgresql_client_packages"] == [package]


def test_pg_hba_admits_the_owner_and_the_runtime_role() -> None:
    """Both logins come from the application hosts: the owner to migrate, the runtime role to serve; with
    strongroom_postgresql_owner_createdb the owner also to any database (backup verify's scratch databases)."""
    tasks = yaml.safe_load((ANSIBLE_DIR / "roles" / "strongroom" / "tasks" / "database.yml").read_text())
    (access,) = [task for task in tasks if "block" in task and "blockinfile" in str(task["block"])]
    (hba,) = [task for task in access["block"] if "ansible.builtin.blockinfile" in task]
    environment = jinja2.Environment(trim_blocks=True, autoescape=False)
    environment.filters["bool"] = lambda value: str(value).lower() in {"true", "yes", "1"}
    per_client = [
        ["hostssl", "crm", "crm_owner,crm_web", "10.40.0.0/24", "scram-sha-256"],
        ["hostssl", "crm", "crm_owner,crm_web", "10.41.0.7/32", "scram-sha-256"],
    ]
    for createdb, expected in ((False, per_client), (True, [*per_client, [
            "hostssl", "all", "crm_owner", "10.40.0.0/24", "scram-sha-256"],
            ["hostssl", "all", "crm_owner", "10.41.0.7/32", "scram-sha-256"]])):
        variables = {"strongroom_postgresql_hba_type": "hostssl", "strongroom_postgresql_db": "crm",
                     "strongroom_postgresql_user": "crm_owner", "strongroom_postgresql_runtime_user": "crm_web",
                     "strongroom_postgresql_allowed_clients": ["10.40.0.0/24", "10.41.0.7/32"],
                     "strongroom_postgresql_owner_createdb": createdb}
        variables["strongroom__pg_users"] = environment.from_string(hba["vars"]["strongroom__pg_users"]).render(
            variables)
        block = environment.from_string(hba["ansible.builtin.blockinfile"]["block"]).render(variables)
        assert [line.split() for line in block.splitlines() if line.strip()] == expected, createdb


def test_only_builtin_modules_are_used() -> None:
    """Galaxy is unreachable from CI and from air-gapped sites: the role must need no collection."""
    module = re.compile(r"^\s*(?:-\s+)?([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:", re.MULTILINE)
    used = {
        (path.relative_to(ANSIBLE_DIR).as_posix(), collection)
        for path in [ANSIBLE_DIR / "site.yml", *(ANSIBLE_DIR / "roles").rglob("*.yml")]
        if "/meta/" not in path.as_posix()
        for collection in module.findall(path.read_text())
    }
    assert used, "no fully qualified module names found; did the layout move?"
    assert {collection for _, collection in used} == {"ansible.builtin"}, sorted(used)


# ------------------------------------------------------------------------------- the real playbook


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mdwe_available() -> bool:
    """Whether this kernel enforces PR_SET_MDWE (Linux 6.3+): set it in a child and try a W+X mapping."""
    probe = (
        "import ctypes, mmap, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0: sys.exit(3)\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except OSError:\n"
        "    sys.exit(0)\n"
        "sys.exit(4)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def _syscall_names(group: str, analyze: str) -> set[str]:
    """The system calls of a systemd group (``systemd-analyze syscall-filter @group``), nested groups expanded."""
    listing = subprocess.run([analyze, "syscall-filter", group], capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if item.startswith("@"):
            names |= _syscall_names(item, analyze)
        elif item and not item.startswith("#"):
            names.add(item)
    return names


class _SockFilterProgram(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]  # struct sock_fprog


class _SeccompAllowList:
    """The unit's ``SystemCallFilter=`` lines as a seccomp BPF allow-list.

    libseccomp compiles it in the parent; the child only calls prctl (no allocation after fork).
    """

    SCMP_ACT_ALLOW = 0x7FFF0000

    def __init__(self, filters: list[str], errno_name: str, analyze: str) -> None:
        assert filters and not filters[0].startswith("~"), "expected an allow-list first, as systemd reads it"
        allowed: set[str] = set()
        for value in filters:
            deny = value.startswith("~")
            names: set[str] = set()
            for token in value.lstrip("~").split():
                names |= _syscall_names(token, analyze) if token.startswith("@") else {token}
            allowed = allowed - names if deny else allowed | names
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        errno_value = {"EPERM": 1, "EACCES": 13, "ENOSYS": 38}[errno_name]
        context = lib.seccomp_init(0x00050000 | errno_value)  # SCMP_ACT_ERRNO(errno)
        assert context, "seccomp_init failed"
        try:
            for name in sorted(allowed):
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number >= 0:  # names of other architectures resolve to __NR_SCMP_ERROR
                    assert lib.seccomp_rule_add(context, self.SCMP_ACT_ALLOW, number, 0) == 0, name
            with tempfile.TemporaryFile() as exported:
                assert lib.seccomp_export_bpf(context, exported.fileno()) == 0, "seccomp_export_bpf failed"
                exported.seek(0)
                program = exported.read()
        finally:
            lib.seccomp_release(context)
        self.buffer = ctypes.create_string_buffer(program, len(program))
        self.program = _SockFilterProgram(len(program) // 8, ctypes.addressof(self.buffer))


def _sandbox(mdwe: bool, seccomp: _SeccompAllowList | None) -> Any:
    libc = ctypes.CDLL(None, use_errno=True)

    def apply() -> None:  # runs in the child between fork and exec, after the switch to the service user
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if mdwe and libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_MDWE")
        if seccomp is not None and libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(seccomp.program),
                                              0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")

    return apply


def _parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit file -> {section: {key: [values in order]}} (enough of systemd.syntax(7) for our units)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP in:\n{output[-4000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _changed_tasks(output: str) -> list[str]:
    changed, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line[line.index("[") + 1 : line.rindex("]")]
        elif line.startswith("changed:"):
            changed.append(task)
    return changed


def _psql(sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
        cwd="/", capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.strip()


@dataclass
class Deployment:
    backend: str
    root: Path
    variables: dict[str, Any]
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return Path(self.variables[name])

    @property
    def unit(self) -> Path:
        return self.path("strongroom_systemd_dir") / "strongroom.service"


@pytest.fixture(scope="module")
def fx_workspace() -> Iterator[Path]:
    """A world-traversable temporary root (the service user must reach the virtualenv inside it)."""
    if os.geteuid() != 0:
        pytest.skip("the playbook creates a system user and runs commands as it: run the tests as root (CI does)")
    for program in ("runuser", "openssl"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing; the role needs it on the host")
    workspace = Path(tempfile.mkdtemp(prefix="strongroom-ansible-"))
    workspace.chmod(0o755)
    yield workspace
    shutil.rmtree(workspace, ignore_errors=True)


@pytest.fixture(scope="module")
def fx_source_and_wheelhouse(fx_workspace: Path) -> tuple[Path, Path]:
    """A snapshot of the source (the role builds the wheel from it) and a wheelhouse of its dependencies.

    The snapshot keeps the two playbook runs on identical input while other work edits the tree; the
    wheelhouse makes the host-side install offline (``--no-index --find-links``), as on an air-gapped site.
    """
    source = fx_workspace / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "server", source / "server", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = fx_workspace / "requirements.txt"
    requirements.write_text("\n".join(dependencies) + "\n")
    wheelhouse = fx_workspace / "wheelhouse"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir",
         str(wheelhouse), "--requirement", str(requirements)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    return source, wheelhouse


def _remove_service_user() -> None:
    with contextlib.suppress(KeyError):
        pwd.getpwnam(SERVICE_USER)
        subprocess.run(["userdel", SERVICE_USER], check=False)
    with contextlib.suppress(KeyError):
        grp.getgrnam(SERVICE_USER)
        subprocess.run(["groupdel", SERVICE_USER], check=False)


@pytest.fixture(scope="module")
def fx_service_user() -> Iterator[str]:
    _remove_service_user()  # a leftover from an interrupted run would hide the role's user creation
    yield SERVICE_USER
    _remove_service_user()


def _run_playbook(deployment: Deployment, inventory: Path, extra_vars: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_tool("ansible-playbook"), "-i", str(inventory), "-e", f"@{extra_vars}", "-v", "--diff", "site.yml"],
        cwd=ANSIBLE_DIR, env=_ansible_env(deployment.root / "ansible-home"),
        capture_output=True, text=True, timeout=600, check=False,
    )
    (deployment.root / f"ansible-run-{len(deployment.runs) + 1}.log").write_text(result.stdout + result.stderr)
    deployment.runs.append(result)
    assert result.returncode == 0, f"ansible-playbook failed:\n{(result.stdout + result.stderr)[-8000:]}"
    return result


def _postgresql_variables(database: str) -> dict[str, Any]:
    """The role's PostgreSQL settings for a fresh database named ``database`` (its owner has the same name)."""
    admin = urllib.parse.urlsplit(POSTGRES_ADMIN_URL)
    return {
        "strongroom_postgresql_host": admin.hostname or "127.0.0.1",
        "strongroom_postgresql_port": admin.port or 5432,
        "strongroom_postgresql_db": database,
        "strongroom_postgresql_user": database,
        "strongroom_postgresql_password": "Ci-db/pass@" + secrets.token_urlsafe(12),  # needs URL quoting
        "strongroom_postgresql_runtime_user": f"{database}_web",
        "strongroom_postgresql_runtime_password": "Ci-web/pass@" + secrets.token_urlsafe(12),
        "strongroom_postgresql_install": False,
        "strongroom_postgresql_configure_access": False,  # leave this machine's pg_hba.conf alone
    }


def _drop_database_and_roles(variables: dict[str, Any]) -> None:
    """Drop what the database play created; strongroom_app is shared by every database of the cluster and stays.
    The write-ahead log settings it kept go back to this machine's configuration."""
    _psql("ALTER SYSTEM RESET wal_compression")
    _psql("ALTER SYSTEM RESET max_wal_size")
    _psql("SELECT pg_reload_conf()")
    _psql(f"DROP DATABASE IF EXISTS {variables['strongroom_postgresql_db']} WITH (FORCE)")
    _psql(f"DROP ROLE IF EXISTS {variables['strongroom_postgresql_runtime_user']}")
    _psql(f"DROP ROLE IF EXISTS {variables['strongroom_postgresql_user']}")


@pytest.fixture(scope="module", params=BACKENDS)
def fx_deployment(
    request: pytest.FixtureRequest, fx_workspace: Path, fx_source_and_wheelhouse: tuple[Path, Path],
    fx_service_user: str,
) -> Iterator[Deployment]:
    """The playbook run twice against localhost with every path under a fresh root."""
    backend: str = request.param
    source, wheelhouse = fx_source_and_wheelhouse
    root = fx_workspace / backend
    root.mkdir()
    root.chmod(0o755)
    (root / "ansible-home" / "tmp").mkdir(parents=True)
    variables: dict[str, Any] = {
        "ansible_become": False,  # already root; there is no sudo here
        "strongroom_manage_packages": False,
        "strongroom_manage_services": False,
        "strongroom_user": fx_service_user,
        "strongroom_group": fx_service_user,
        # One code prefix for both scenarios: the second finds the same wheel installed and skips pip.
        "strongroom_prefix": str(fx_workspace / "opt/strongroom"),
        "strongroom_etc_dir": str(root / "etc/strongroom"),
        "strongroom_data_dir": str(root / "var/lib/strongroom"),
        "strongroom_backup_dir": str(root / "var/backups/strongroom"),
        "strongroom_ledger_dir": str(root / "var/lib/strongroom-ledger"),
        "strongroom_log_dir": str(root / "var/log/strongroom"),
        "strongroom_systemd_dir": str(root / "etc/systemd/system"),
        "strongroom_nginx_conf_dir": str(root / "etc/nginx/conf.d"),
        "strongroom_logrotate_dir": str(root / "etc/logrotate.d"),
        "strongroom_journald_dir": str(root / "etc/systemd/journald.conf.d"),
        "strongroom_source_dir": str(source),
        "strongroom_controller_build_dir": str(fx_workspace / "controller-build"),
        "strongroom_wheelhouse_dir": str(wheelhouse),
        "strongroom_port": _free_port(),
        "strongroom_workers": 1,
        "strongroom_admin_password": "Ci-admin-" + secrets.token_urlsafe(12),
        "strongroom_server_name": "crm.ci.internal",
        "strongroom_nginx_enabled": backend == "sqlite",  # rendered once is enough
        "strongroom_tls_self_signed": True,
        "strongroom_nginx_validate": False,  # no nginx package here; checked below with nginx -t if present
        "strongroom_db_backend": backend,
        "strongroom_audit_archive_enabled": True,
        "strongroom_audit_archive_credential": str(root / "etc/credstore/strongroom-owner-database-url"),
        "strongroom_backup_verify_enabled": True,
    }
    if backend == "sqlite":  # PostgreSQL backups are checked in a scratch database, not in a directory
        variables["strongroom_backup_verify_scratch_dir"] = str(root / "var/tmp/strongroom-verify")
    built = sorted((fx_workspace / "controller-build").glob("strongroom-*.whl"))
    if built:  # the first scenario's build: this one takes the strongroom_wheel_src path instead
        variables["strongroom_wheel_src"] = str(built[-1])
    for directory in ("etc/systemd/system", "etc/nginx/conf.d", "etc/logrotate.d"):
        (root / directory).mkdir(parents=True)
    groups: dict[str, Any] = {"strongroom_app": {"hosts": {"localhost": None}}}
    database = ""
    if backend == "postgresql":
        database = f"strongroom_ci_{secrets.token_hex(4)}"
        variables.update(_postgresql_variables(database))
        groups["strongroom_database"] = {"hosts": {"localhost": None}}
    inventory = root / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "children": groups,
    }}))
    extra_vars = root / "extra-vars.json"
    extra_vars.write_text(json.dumps(variables))
    extra_vars.chmod(0o600)
    deployment = Deployment(backend=backend, root=root, variables=variables)
    try:
        _run_playbook(deployment, inventory, extra_vars)
        _run_playbook(deployment, inventory, extra_vars)
        yield deployment
    finally:
        if database:
            _drop_database_and_roles(variables)


def test_second_run_changes_nothing(fx_deployment: Deployment) -> None:
    first, second = fx_deployment.runs
    assert _recap(first.stdout)["changed"] > 0
    recap = _recap(second.stdout)
    assert recap["failed"] == 0
    assert recap["changed"] == 0, f"tasks not idempotent: {_changed_tasks(second.stdout)}"


def test_secrets_never_reach_the_output(fx_deployment: Deployment) -> None:
    secret_values = [fx_deployment.variables["strongroom_admin_password"]]
    if fx_deployment.backend == "postgresql":
        for name in ("strongroom_postgresql_password", "strongroom_postgresql_runtime_password"):
            password = fx_deployment.variables[name]
            secret_values += [password, urllib.parse.quote(password, safe="")]
    for run in fx_deployment.runs:
        for value in secret_values:
            assert value not in run.stdout + run.stderr


def _owner(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


def test_files_ownership_and_modes(fx_deployment: Deployment) -> None:
    user = SERVICE_USER
    entry = pwd.getpwnam(user)
    assert entry.pw_shell.endswith("nologin")
    assert entry.pw_uid < 1000, "not a system user"
    config = fx_deployment.path("strongroom_etc_dir") / "config.toml"
    keys = fx_deployment.path("strongroom_etc_dir") / "keys"
    assert _owner(fx_deployment.path("strongroom_etc_dir")) == ("root", user, 0o750)
    assert _owner(config) == ("root", user, 0o640)
    assert _owner(keys) == (user, user, 0o700)
    key_files = sorted(keys.iterdir())
    assert keys / SIGNING_KEY_FILE in key_files
    for key_file in key_files:
        assert _owner(key_file) == (user, user, 0o600), key_file
    assert _owner(fx_deployment.path("strongroom_data_dir")) == (user, user, 0o750)
    assert _owner(fx_deployment.path("strongroom_backup_dir")) == (user, user, 0o700)
    assert _owner(fx_deployment.path("strongroom_ledger_dir")) == (user, user, 0o700)
    venv = fx_deployment.path("strongroom_prefix") / "venv"
    assert _owner(venv)[0] == "root"
    assert _owner(venv / "bin" / "strongroom")[0] == "root", "the service must not own its code"
    if fx_deployment.backend == "sqlite":
        assert _owner(fx_deployment.path("strongroom_data_dir") / "strongroom.db")[0] == user


def test_config_is_valid_for_strongroom(fx_deployment: Deployment) -> None:
    config = fx_deployment.path("strongroom_etc_dir") / "config.toml"
    settings = load_settings(environ={"STRONGROOM_CONFIG": str(config)})
    assert settings.port == fx_deployment.variables["strongroom_port"]
    assert settings.data_dir == fx_deployment.variables["strongroom_data_dir"]
    assert str(settings.resolved_keys_dir) == str(fx_deployment.path("strongroom_etc_dir") / "keys")
    # The keys directory is read-only under ProtectSystem=strict; the ledger must be where the service writes.
    assert settings.resolved_erasure_ledger_path.parent == fx_deployment.path("strongroom_ledger_dir")
    assert str(settings.resolved_backup_dir) == fx_deployment.variables["strongroom_backup_dir"]
    if fx_deployment.backend == "postgresql":
        # The server logs in as the runtime role; the owner's login is on no file of the host (migrate got it
        # on standard input) except the audit archive job's root-only credential (checked in its own test).
        url = urllib.parse.urlsplit(settings.resolved_database_url)
        assert url.scheme == "postgresql+asyncpg"
        assert url.username == fx_deployment.variables["strongroom_postgresql_runtime_user"]
        assert urllib.parse.unquote(url.password or "") == fx_deployment.variables[
            "strongroom_postgresql_runtime_password"]
        assert url.path == "/" + fx_deployment.variables["strongroom_postgresql_db"]
        owner_password = fx_deployment.variables["strongroom_postgresql_password"].encode()
        credential = Path(fx_deployment.variables["strongroom_audit_archive_credential"])
        assert credential.is_file()
        for directory in ("etc", "var"):
            for path in (fx_deployment.root / directory).rglob("*"):
                if path.is_file() and path != credential:
                    content = path.read_bytes()
                    assert owner_password not in content, path
                    assert urllib.parse.quote(owner_password, safe="").encode() not in content, path
    else:
        assert settings.is_sqlite


def test_unit_is_hardened(fx_deployment: Deployment) -> None:
    service = _parse_unit(fx_deployment.unit)["Service"]
    for key, value in REQUIRED_HARDENING.items():
        assert service.get(key) == [value], f"{key}= is {service.get(key)}, expected {value!r}"
    assert "@system-service" in service["SystemCallFilter"]
    assert service["User"] == [SERVICE_USER]
    assert service["ReadWritePaths"] == [
        f"{fx_deployment.variables['strongroom_data_dir']} {fx_deployment.variables['strongroom_ledger_dir']}"]
    assert service["ExecStart"] == [f"{fx_deployment.path('strongroom_prefix')}/venv/bin/strongroom serve"]


def test_backup_service_and_timer(fx_deployment: Deployment) -> None:
    systemd_dir = fx_deployment.path("strongroom_systemd_dir")
    backup = _parse_unit(systemd_dir / "strongroom-backup.service")["Service"]
    assert backup["Type"] == ["oneshot"]
    assert backup["User"] == [SERVICE_USER]
    out = fx_deployment.variables["strongroom_backup_dir"]
    strongroom = fx_deployment.path("strongroom_prefix") / "venv" / "bin" / "strongroom"
    assert backup["ExecStart"] == [f"{strongroom} backup create --out {out} --prune"]
    # The same settings as the server's (config.toml): backups run as the runtime role, not as the owner.
    assert backup["Environment"] == [f"STRONGROOM_CONFIG={fx_deployment.path('strongroom_etc_dir')}/config.toml"]
    assert out in backup["ReadWritePaths"][0].split()
    timer = _parse_unit(systemd_dir / "strongroom-backup.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == ["true"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def _job_command(deployment: Deployment, unit: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """A oneshot unit's ExecStart and environment as systemd would run it, its credential where systemd puts it."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    environment["STRONGROOM_CONFIG"] = unit["Environment"][0].split("=", 1)[1]
    (exec_start,) = unit["ExecStart"]
    if "LoadCredential" in unit:
        (load,) = unit["LoadCredential"]
        name, source = load.split(":", 1)
        credentials = Path(tempfile.mkdtemp(dir=deployment.root))  # 0700, as systemd makes it for the unit's user
        shutil.copy(source, credentials / name)
        (user,) = unit["User"]
        shutil.chown(credentials / name, user, user)
        shutil.chown(credentials, user, user)
        environment["CREDENTIALS_DIRECTORY"] = str(credentials)
    return shlex.split(exec_start.replace("$$", "$")), environment


def _run_as_service_user(deployment: Deployment, command: list[str],
                         environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", SERVICE_USER, "--", *command], env=environment, capture_output=True,
                          text=True, timeout=300, check=False, cwd=deployment.variables["strongroom_data_dir"])


def _run_as_unit_user(deployment: Deployment, unit: dict[str, list[str]], command: list[str],
                      environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As the unit's User= and Group=; for root, with only the capabilities its bounding set keeps."""
    if unit["User"] != ["root"]:
        return _run_as_service_user(deployment, command, environment)
    (group,) = unit["Group"]
    kept = [name.removeprefix("CAP_").lower() for line in unit["CapabilityBoundingSet"] for name in line.split()]
    privileges = ["setpriv", f"--regid={group}", "--clear-groups", "--inh-caps=-all",
                  "--bounding-set=" + ",".join(["-all", *(f"+{name}" for name in kept)])]
    return subprocess.run([*privileges, *command], env=environment, capture_output=True, text=True, timeout=300,
                          check=False, cwd=deployment.variables["strongroom_data_dir"])


def _owner_credential_problems(deployment: Deployment, unit: dict[str, list[str]], credential: Path) -> list[str]:
    """What is wrong with how ``unit`` gets the schema owner's URL (PostgreSQL): from ``credential``, root-only."""
    variables = deployment.variables
    expected_url = (f"postgresql+asyncpg://{variables['strongroom_postgresql_user']}:"
                    f"{urllib.parse.quote(variables['strongroom_postgresql_password'], safe='')}@"
                    f"{variables['strongroom_postgresql_host']}:{variables['strongroom_postgresql_port']}/"
                    f"{variables['strongroom_postgresql_db']}")
    problems = []
    # Root, with the sandbox's empty bounding set extended by two capabilities (systemd ORs later lines in):
    # never the service user, whose processes could read the owner's URL from the job while it runs.
    if unit.get("User") != ["root"] or unit.get("Group") != [SERVICE_USER]:
        problems.append(f"User= is {unit.get('User')}, Group= is {unit.get('Group')}")
    if unit.get("CapabilityBoundingSet") != ["", "CAP_DAC_OVERRIDE CAP_CHOWN"]:
        problems.append(f"CapabilityBoundingSet= is {unit.get('CapabilityBoundingSet')}")
    if unit.get("LoadCredential") != [f"owner-database-url:{credential}"]:
        problems.append(f"LoadCredential= is {unit.get('LoadCredential')}")
    if _owner(credential) != ("root", "root", 0o600) or _owner(credential.parent) != ("root", "root", 0o700):
        problems.append(f"{credential} or its directory is not root-only")
    if credential.read_text() != expected_url:
        problems.append(f"{credential} does not hold the owner's URL")
    return problems


def test_audit_archive_job_runs_as_the_owner_from_a_root_only_credential(fx_deployment: Deployment) -> None:
    """The timer's unit archives with the schema owner's rights on PostgreSQL (the runtime role in config.toml
    may not), from a credential only root reads on disk, as root with two capabilities: never as the server's
    user, which could read the owner's login from a job of its own user while it runs. On SQLite (no owner) it
    runs as the service user."""
    systemd_dir = fx_deployment.path("strongroom_systemd_dir")
    unit = _parse_unit(systemd_dir / "strongroom-audit-archive.service")["Service"]
    assert unit["Type"] == ["oneshot"] and unit["Group"] == [SERVICE_USER]
    assert unit["User"] == [SERVICE_USER if fx_deployment.backend == "sqlite" else "root"]
    assert unit["Environment"] == [f"STRONGROOM_CONFIG={fx_deployment.path('strongroom_etc_dir')}/config.toml"]
    timer = _parse_unit(systemd_dir / "strongroom-audit-archive.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == ["timers.target"]
    strongroom = fx_deployment.path("strongroom_prefix") / "venv" / "bin" / "strongroom"
    credential = Path(fx_deployment.variables["strongroom_audit_archive_credential"])
    command, environment = _job_command(fx_deployment, unit)
    if fx_deployment.backend == "sqlite":
        assert unit["ExecStart"] == [f"{strongroom} audit archive"]
        assert "LoadCredential" not in unit and not credential.exists()
    else:
        assert _owner_credential_problems(fx_deployment, unit, credential) == []
        # Without the credential, as config.toml's runtime login, the same command is refused before it writes.
        runtime = {key: value for key, value in environment.items() if key != "CREDENTIALS_DIRECTORY"}
        refused = _run_as_service_user(fx_deployment, [str(strongroom), "audit", "archive"], runtime)
        assert refused.returncode == 1 and "only the schema owner may record an archive" in refused.stderr
    result = _run_as_unit_user(fx_deployment, unit, command, environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing more to archive" in result.stdout


def test_the_service_user_cannot_read_the_owner_login_from_a_running_owner_job(fx_deployment: Deployment) -> None:
    """The attack the root-run owner jobs close: the server's user (say, a compromised server) reading the owner's
    login from the environment of a job that holds it. A process of its own user gives it away; a root job's
    does not, nor does the root-only credential on disk."""
    secret = f"postgresql+asyncpg://owner:{secrets.token_hex(8)}@db/strongroom"
    environment = {"PATH": os.environ["PATH"], "STRONGROOM_DATABASE_URL": secret}

    def environ_as_service_user(job_user: str) -> subprocess.CompletedProcess[bytes]:
        # setpriv execs in place (runuser would fork): the process started is the one holding the environment.
        job = subprocess.Popen(["setpriv", f"--reuid={job_user}", f"--regid={job_user}", "--clear-groups",
                                "sleep", "30"], env=environment)
        try:
            time.sleep(0.5)
            return subprocess.run(["runuser", "-u", SERVICE_USER, "--", "cat", f"/proc/{job.pid}/environ"],
                                  capture_output=True, timeout=30, check=False)
        finally:
            job.kill()
            job.wait()

    leaked = environ_as_service_user(SERVICE_USER)
    assert leaked.returncode == 0 and secret.encode() in leaked.stdout  # why the jobs must not run as that user
    refused = environ_as_service_user("root")
    assert refused.returncode != 0 and secret.encode() not in refused.stdout
    if fx_deployment.backend == "postgresql":
        credential = fx_deployment.variables["strongroom_audit_archive_credential"]
        denied = subprocess.run(["runuser", "-u", SERVICE_USER, "--", "cat", credential], capture_output=True,
                                timeout=30, check=False)
        assert denied.returncode != 0 and not denied.stdout


def test_backup_verify_job_proves_the_newest_backup(fx_deployment: Deployment) -> None:
    """The weekly unit verifies the newest backup in the backup directory (on PostgreSQL as the schema owner, whom
    the database play gave CREATEDB, from the archive job's credential): exit 2 before any backup, 0 after one."""
    variables = fx_deployment.variables
    systemd_dir = fx_deployment.path("strongroom_systemd_dir")
    unit = _parse_unit(systemd_dir / "strongroom-backup-verify.service")
    service = unit["Service"]
    assert service["Type"] == ["oneshot"] and service["Group"] == [SERVICE_USER]
    assert service["User"] == [SERVICE_USER if fx_deployment.backend == "sqlite" else "root"]
    assert service["Environment"] == [f"STRONGROOM_CONFIG={fx_deployment.path('strongroom_etc_dir')}/config.toml"]
    assert "strongroom-backup.service" in unit["Unit"]["After"][0].split()
    for key, value in REQUIRED_HARDENING.items():
        if key == "CapabilityBoundingSet" and fx_deployment.backend == "postgresql":
            continue  # extended for the root-run owner job: checked in _owner_credential_problems
        assert service.get(key) == [value], f"{key}= is {service.get(key)}, expected {value!r}"
    timer = _parse_unit(systemd_dir / "strongroom-backup-verify.timer")
    defaults = yaml.safe_load((ANSIBLE_DIR / "roles" / "strongroom" / "defaults" / "main.yml").read_text())
    assert timer["Timer"]["OnCalendar"] == [defaults["strongroom_backup_verify_on_calendar"]] == ["Sun *-*-* 04:30:00"]
    assert timer["Timer"]["Persistent"] == ["true"] and timer["Install"]["WantedBy"] == ["timers.target"]

    strongroom = fx_deployment.path("strongroom_prefix") / "venv" / "bin" / "strongroom"
    backups = variables["strongroom_backup_dir"]
    # --max-age 48 (the default): a good but old newest backup (backups stopped) fails the unit too.
    verify = f"{strongroom} backup verify --latest --dir {backups} --max-age 48"
    scratch = variables.get("strongroom_backup_verify_scratch_dir")
    if fx_deployment.backend == "sqlite":
        assert service["ExecStart"] == [f"{verify} --scratch-dir {scratch}"]
        assert "LoadCredential" not in service
        assert service["ReadWritePaths"] == [f"{variables['strongroom_data_dir']} {scratch}"]
        assert _owner(Path(scratch)) == (SERVICE_USER, SERVICE_USER, 0o700)
    else:
        assert verify in service["ExecStart"][0]
        credential = Path(variables["strongroom_audit_archive_credential"])  # shared by default: one copy on disk
        assert _owner_credential_problems(fx_deployment, service, credential) == []
        assert service["ReadWritePaths"] == [variables["strongroom_data_dir"]]
        name = variables["strongroom_postgresql_db"]
        assert _psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{name}'") == "t"
    command, environment = _job_command(fx_deployment, service)
    assert not list(Path(backups).glob("*.srbk")), "the deployment took no backup yet"
    nothing = _run_as_unit_user(fx_deployment, service, command, environment)
    assert nothing.returncode == 2 and f"no database backup to verify in {backups}" in nothing.stderr, nothing.stderr

    # A backup as the backup timer takes it (the runtime role), then the verification job.
    backup_unit = _parse_unit(systemd_dir / "strongroom-backup.service")["Service"]
    created = _run_as_service_user(fx_deployment, *_job_command(fx_deployment, backup_unit))
    assert created.returncode == 0, created.stdout + created.stderr
    (backup,) = Path(backups).glob("strongroom-*.srbk")
    result = _run_as_unit_user(fx_deployment, service, command, environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"newest backup: {backup} (made " in result.stdout and f"backup OK: {backup.name}" in result.stdout
    if scratch:
        assert list(Path(scratch).iterdir()) == [], "the decrypted copy was left behind"
    if fx_deployment.backend == "postgresql":
        # config.toml's runtime login may not create the scratch database: the job needs the owner.
        runtime = {key: value for key, value in environment.items() if key != "CREDENTIALS_DIRECTORY"}
        refused = _run_as_service_user(fx_deployment, [str(strongroom), "backup", "verify", "--latest", "--dir",
                                                       backups, "--quiet"], runtime)
        assert refused.returncode == 2 and "CREATEDB" in refused.stderr, refused.stderr


def test_units_pass_systemd_analyze_verify(fx_deployment: Deployment) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit files were checked by parsing only")
    systemd_dir = fx_deployment.path("strongroom_systemd_dir")
    units = [str(systemd_dir / name) for name in ("strongroom.service", "strongroom-backup.service",
                                                   "strongroom-backup.timer", "strongroom-audit-archive.service",
                                                   "strongroom-audit-archive.timer", "strongroom-backup-verify.service",
                                                   "strongroom-backup-verify.timer")]
    result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60,
                            check=False)
    # Without systemd as PID 1 some environments print notes about the missing manager; errors in *our*
    # files name the file, and so does any unknown or invalid directive.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if str(systemd_dir) in line]
    assert not problems, "\n".join(problems)
    assert result.returncode == 0, result.stdout + result.stderr

    # systemd's own rating of the sandbox, 0 (locked down) to 10 (exposed), passed in tenths: the unit rates 1.5.
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", units[0]],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_service_starts_from_the_rendered_unit(fx_deployment: Deployment) -> None:
    """ExecStart as the unit would run it (no systemd here): the service user, its environment, sandboxed."""
    service = _parse_unit(fx_deployment.unit)["Service"]
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for assignment in service.get("Environment", []):
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            environment[key] = value
    mdwe = _mdwe_available()
    if not mdwe:
        print("kernel without PR_SET_MDWE: MemoryDenyWriteExecute not exercised")
    analyze = shutil.which("systemd-analyze")
    seccomp = None
    if analyze is None or ctypes.util.find_library("seccomp") is None:
        print("no systemd-analyze or libseccomp: SystemCallFilter not exercised")
    else:
        seccomp = _SeccompAllowList(service["SystemCallFilter"], service["SystemCallErrorNumber"][0], analyze)
    port = fx_deployment.variables["strongroom_port"]
    log_path = fx_deployment.root / "serve.log"
    with log_path.open("wb") as log:
        # preexec_fn only calls prctl: the filter was compiled above, nothing is allocated after fork
        process = subprocess.Popen(
            shlex.split(service["ExecStart"][0]),
            cwd=service["WorkingDirectory"][0], env=environment, user=service["User"][0],
            group=service["Group"][0], extra_groups=[], umask=int(service["UMask"][0], 8),
            preexec_fn=_sandbox(mdwe, seccomp), start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status, body = 0, b""
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                status, body = _http("GET", f"{base}/health/ready")
                if status == 200:
                    break
            time.sleep(0.3)
        assert process.poll() is None, f"the service exited ({process.returncode}):\n{log_path.read_text()[-4000:]}"
        assert status == 200, f"/health/ready answered {status} {body!r}:\n{log_path.read_text()[-4000:]}"
        assert json.loads(body)["status"] == "ok"
        status_lines = dict(line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines())
        assert int(status_lines["Uid"].split()[1]) == pwd.getpwnam(SERVICE_USER).pw_uid
        assert status_lines["NoNewPrivs"].strip() == "1"
        if seccomp is not None:
            assert status_lines["Seccomp"].strip() == "2", "the system call filter is not in force"
        # init received the admin password on standard input: the first admin can sign in with it.
        form = urllib.parse.urlencode({"grant_type": "password", "username": "admin",
                                       "password": fx_deployment.variables["strongroom_admin_password"]})
        status, body = _http("POST", f"{base}/api/v1/auth/token", form.encode())
        assert status == 200, body
        assert json.loads(body)["token_type"].lower() == "bearer"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_postgresql_role_and_database(fx_deployment: Deployment) -> None:
    if fx_deployment.backend != "postgresql":
        pytest.skip("PostgreSQL scenario only")
    name = fx_deployment.variables["strongroom_postgresql_db"]
    runtime = fx_deployment.variables["strongroom_postgresql_runtime_user"]
    assert _psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'") == name
    for role in (name, runtime):
        assert _psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'").startswith("SCRAM-SHA-256$")
    assert _psql(f"SELECT has_database_privilege('public', '{name}', 'CONNECT')") == "f"
    assert _psql(f"SELECT pg_has_role('{runtime}', 'strongroom_app', 'USAGE')") == "t"
    # backup verification is on: the owner may create its scratch databases, the runtime role still may not.
    assert _psql(f"SELECT rolname, rolcreatedb FROM pg_roles WHERE rolname IN ('{name}', '{runtime}') "
                 "ORDER BY rolname").splitlines() == [f"{name}|t", f"{runtime}|f"]
    # The migration ran as the owner (the runtime role cannot create tables).
    assert _psql("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'", database=name) == name


def test_reverse_proxy_logs_and_journal(fx_deployment: Deployment) -> None:
    if fx_deployment.backend != "sqlite":
        pytest.skip("rendered in the SQLite scenario")
    variables = fx_deployment.variables
    etc = fx_deployment.path("strongroom_etc_dir")
    vhost = (fx_deployment.path("strongroom_nginx_conf_dir") / "strongroom.conf").read_text()
    assert f"server 127.0.0.1:{variables['strongroom_port']};" in vhost
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in vhost
    log_format = re.search(r"log_format strongroom_noquery(.*?);", vhost, re.DOTALL)
    assert log_format, vhost
    assert not re.search(r"\$(request|request_uri|args|query_string)\b", log_format.group(1)), "query strings logged"
    certificate, key = etc / "tls" / "strongroom.crt", etc / "tls" / "strongroom.key"
    assert _owner(key) == ("root", "root", 0o600)
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(certificate)],
                             capture_output=True, text=True, check=True).stdout
    assert variables["strongroom_server_name"] in subject
    nginx = shutil.which("nginx")
    if nginx:
        main = fx_deployment.root / "nginx-test.conf"
        main.write_text(f"pid {fx_deployment.root}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                        f"http {{ include {fx_deployment.path('strongroom_nginx_conf_dir')}/*.conf; }}\n")
        result = subprocess.run([nginx, "-t", "-c", str(main)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    logrotate_conf = fx_deployment.path("strongroom_logrotate_dir") / "strongroom"
    assert f"{variables['strongroom_log_dir']}/*.log" in logrotate_conf.read_text()
    logrotate = shutil.which("logrotate")
    if logrotate:
        result = subprocess.run([logrotate, "-d", "-s", str(fx_deployment.root / "logrotate.state"),
                                 str(logrotate_conf)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    journald = (fx_deployment.path("strongroom_journald_dir") / "50-strongroom.conf").read_text()
    assert "Storage=persistent" in journald and "SystemMaxUse=" in journald


def test_turning_backup_verification_off_removes_its_units(fx_deployment: Deployment) -> None:
    """Off after on: the role removes the verification units (stopping the timer first where it manages systemd)
    and leaves the rest, the archive job's credential included; with the archive job off too, the owner's URL
    leaves the host; on again, they are back. Runs the playbook three times more, with the deployment's own
    inventory, and leaves the deployment as it found it. On PostgreSQL the owner's CREATEDB (for verify's scratch
    databases) goes with it and comes back."""
    systemd_dir = fx_deployment.path("strongroom_systemd_dir")
    verify_units = [systemd_dir / "strongroom-backup-verify.service", systemd_dir / "strongroom-backup-verify.timer"]
    others = sorted(path for path in systemd_dir.iterdir() if path.is_file() and path not in verify_units)
    assert all(unit.is_file() for unit in verify_units) and len(others) == 5
    inventory = fx_deployment.root / "inventory.json"
    off = fx_deployment.root / "extra-vars-verify-off.json"
    off.write_text(json.dumps({**fx_deployment.variables, "strongroom_backup_verify_enabled": False}))
    off.chmod(0o600)
    runs = Deployment(backend=fx_deployment.backend, root=fx_deployment.root, variables=fx_deployment.variables)

    turned_off = _run_playbook(runs, inventory, off)
    assert "strongroom : Remove the services and timers of jobs turned off" in _changed_tasks(turned_off.stdout)
    assert not any(unit.exists() for unit in verify_units)
    assert sorted(path for path in systemd_dir.iterdir() if path.is_file()) == others
    if fx_deployment.backend == "postgresql":
        assert Path(fx_deployment.variables["strongroom_audit_archive_credential"]).is_file()  # still the archive's
        owner = fx_deployment.variables["strongroom_postgresql_user"]
        assert _psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{owner}'") == "f"  # revoked: not needed
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        result = subprocess.run([analyze, "verify", "--man=no", *map(str, others)], capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    # Both owner jobs off: the owner's URL is no longer stored on the host.
    credential = Path(fx_deployment.variables["strongroom_audit_archive_credential"])
    both_off = fx_deployment.root / "extra-vars-owner-jobs-off.json"
    both_off.write_text(json.dumps({**fx_deployment.variables, "strongroom_backup_verify_enabled": False,
                                    "strongroom_audit_archive_enabled": False}))
    both_off.chmod(0o600)
    _run_playbook(runs, inventory, both_off)
    assert not credential.exists()
    assert not (systemd_dir / "strongroom-audit-archive.timer").exists()  # no timer left to run without it

    _run_playbook(runs, inventory, fx_deployment.root / "extra-vars.json")
    assert all(unit.is_file() for unit in verify_units)
    assert credential.is_file() == (fx_deployment.backend == "postgresql")
    if fx_deployment.backend == "postgresql":  # on again: granted again
        assert _psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{owner}'") == "t"


# ------------------------------------------------------------------------- the database play on its own


# strongroom_app's privileges in the current database: {object: "privilege,privilege"}; the schema as "schema public".
_RUNTIME_GRANTS_SQL = """
SELECT c.relname || '|' || coalesce(string_agg(acl.privilege_type, ',' ORDER BY acl.privilege_type), '')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL aclexplode(c.relacl) AS acl ON acl.grantee = 'strongroom_app'::regrole
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v')
 GROUP BY c.relname
UNION ALL
SELECT 'schema public|' || coalesce(string_agg(acl.privilege_type, ',' ORDER BY acl.privilege_type), '')
  FROM pg_namespace n
  LEFT JOIN LATERAL aclexplode(n.nspacl) AS acl ON acl.grantee = 'strongroom_app'::regrole
 WHERE n.nspname = 'public'
"""


def _runtime_grants(database: str) -> dict[str, str]:
    return dict(line.split("|", 1) for line in _psql(_RUNTIME_GRANTS_SQL, database=database).splitlines())


@dataclass
class DatabasePlay:
    root: Path
    variables: dict[str, Any]
    inventory: Path
    extra_vars: Path
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def run(self) -> subprocess.CompletedProcess[str]:
        deployment = Deployment(backend="postgresql", root=self.root, variables=self.variables, runs=self.runs)
        return _run_playbook(deployment, self.inventory, self.extra_vars)

    def url(self, role: str) -> str:
        """``role``'s asyncpg URL: ``owner`` or ``runtime``."""
        prefix = "strongroom_postgresql" if role == "owner" else "strongroom_postgresql_runtime"
        v = self.variables
        return (f"postgresql+asyncpg://{v[prefix + '_user']}:{urllib.parse.quote(v[prefix + '_password'], safe='')}"
                f"@{v['strongroom_postgresql_host']}:{v['strongroom_postgresql_port']}/{v['strongroom_postgresql_db']}")


@pytest.fixture(scope="module")
def fx_database_play(fx_workspace: Path) -> Iterator[DatabasePlay]:
    """site.yml with only the database host (no application host): run twice, then the migrations as the owner."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not among STRONGROOM_TEST_BACKENDS")
    root = fx_workspace / "database-play"
    (root / "ansible-home" / "tmp").mkdir(parents=True)
    database = f"strongroom_dbplay_{secrets.token_hex(4)}"
    variables: dict[str, Any] = {
        "ansible_become": False,
        "strongroom_manage_packages": False,
        "strongroom_manage_services": False,
        **_postgresql_variables(database),
    }
    inventory = root / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "children": {"strongroom_database": {"hosts": {"localhost": None}}, "strongroom_app": {"hosts": {}}},
    }}))
    extra_vars = root / "extra-vars.json"
    extra_vars.write_text(json.dumps(variables))
    extra_vars.chmod(0o600)
    play = DatabasePlay(root=root, variables=variables, inventory=inventory, extra_vars=extra_vars)
    try:
        play.run()
        migrate(play.url("owner"))
        play.run()
        yield play
    finally:
        _drop_database_and_roles(variables)


def test_database_play_creates_the_roles_once(fx_database_play: DatabasePlay) -> None:
    first, second = fx_database_play.runs[:2]
    assert "strongroom : Create the roles and the database (if missing)" in _changed_tasks(first.stdout)
    recap = _recap(second.stdout)
    assert recap["changed"] == 0, f"tasks not idempotent: {_changed_tasks(second.stdout)}"
    runtime = fx_database_play.variables["strongroom_postgresql_runtime_user"]
    assert _psql(f"SELECT rolcanlogin, rolinherit, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls "
                 f"FROM pg_roles WHERE rolname = '{runtime}'") == "t|t|f"
    # Backup verification is off (the default): the owner gets no CREATEDB either.
    owner = fx_database_play.variables["strongroom_postgresql_user"]
    assert _psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{owner}'") == "f"
    assert _psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{runtime}'").startswith("SCRAM-SHA-256$")
    assert _psql(f"SELECT pg_has_role('{runtime}', 'strongroom_app', 'USAGE'), "
                 f"pg_has_role('{runtime}', '{fx_database_play.variables['strongroom_postgresql_user']}', 'MEMBER')"
                 ) == "t|f"
    for run in fx_database_play.runs:
        for name in ("strongroom_postgresql_password", "strongroom_postgresql_runtime_password"):
            assert fx_database_play.variables[name] not in run.stdout + run.stderr


async def _try(connection: asyncpg.Connection, statement: str) -> str:
    """Run ``statement`` in a transaction that is rolled back; "ok" or the database's error message."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(statement)
        return "ok"
    except asyncpg.PostgresError as error:
        return str(error)
    finally:
        await transaction.rollback()


def test_the_runtime_login_works_on_the_crm_but_cannot_touch_the_trail(fx_database_play: DatabasePlay) -> None:
    async def attempts(role: str, statements: list[str]) -> list[str]:
        connection = await asyncpg.connect(fx_database_play.url(role).replace("+asyncpg", ""))
        try:
            return [await _try(connection, statement) for statement in statements]
        finally:
            await connection.close()

    owner = fx_database_play.variables["strongroom_postgresql_user"]
    crm = [
        "INSERT INTO org_units (id, name, created_at, updated_at, version) "
        "VALUES (gen_random_uuid(), 'ci', now(), now(), 1)",
        "UPDATE org_units SET version = version + 1",
        "DELETE FROM org_units",
        "SELECT count(*) FROM audit_events",
    ]
    trail = [
        "DELETE FROM audit_events",
        "UPDATE audit_events SET outcome = outcome",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        f"SET ROLE {owner}",
    ]
    runtime_results = asyncio.run(attempts("runtime", crm + trail))
    assert runtime_results[: len(crm)] == ["ok"] * len(crm)
    assert runtime_results[len(crm):] == [
        "permission denied for table audit_events",
        "permission denied for table audit_events",
        "permission denied for table audit_events",
        "must be owner of table audit_events",
        f'permission denied to set role "{owner}"',
    ]
    # The owner, which the server no longer logs in as, could lift the triggers (rolled back here).
    assert asyncio.run(attempts("owner", ["ALTER TABLE audit_events DISABLE TRIGGER USER"])) == ["ok"]


def test_init_and_backups_work_as_the_runtime_login(fx_database_play: DatabasePlay, tmp_path: Path) -> None:
    """The role runs init and the backup timer with the server's settings, so the owner's login stays off the host."""
    environment = {**os.environ, "STRONGROOM_DATA_DIR": str(tmp_path / "data"),
                   "STRONGROOM_DATABASE_URL": fx_database_play.url("runtime")}
    environment.pop("STRONGROOM_CONFIG", None)
    strongroom = str(VENV_BIN / "strongroom")
    commands = [
        ([strongroom, "init", "--admin-password-stdin"], "Ci-admin-password-1\n"),  # init migrates: nothing to do
        ([strongroom, "backup", "create", "--out", str(tmp_path / "backups"), "--prune"], ""),  # pg_dump included
    ]
    for command, stdin in commands:
        result = subprocess.run(command, input=stdin, env=environment, capture_output=True, text=True, timeout=300,
                                check=False)
        assert result.returncode == 0, f"{command[1:]}: {result.stdout}{result.stderr}"
    assert len(list((tmp_path / "backups").glob("*.srbk"))) == 1


def test_a_schema_migrated_before_strongroom_app_existed_gets_its_grants(fx_database_play: DatabasePlay) -> None:
    database = fx_database_play.variables["strongroom_postgresql_db"]
    migrated = _runtime_grants(database)
    assert migrated["audit_events"] == "INSERT,SELECT" and migrated["customers"] == "DELETE,INSERT,SELECT,UPDATE"
    # What a migration run without the role leaves (it skips its grants), in this database only: the role
    # itself is shared by the cluster's other databases.
    for kind in ("ALL TABLES IN SCHEMA public", "ALL SEQUENCES IN SCHEMA public", "SCHEMA public"):
        _psql(f"REVOKE ALL ON {kind} FROM strongroom_app", database=database)
    assert set(_runtime_grants(database).values()) == {""}
    run = fx_database_play.run()
    assert _changed_tasks(run.stdout) == [
        "strongroom : Grant strongroom_app its rights on a schema migrated before the role existed"]
    assert _runtime_grants(database) == migrated
    again = fx_database_play.run()
    assert _recap(again.stdout)["changed"] == 0, _changed_tasks(again.stdout)


def test_database_play_keeps_the_write_ahead_log_settings(fx_deployment: Deployment) -> None:
    """wal_compression lz4 (PostgreSQL 15+) and max_wal_size 4GB, set with ALTER SYSTEM and applied by a reload; the
    second run found them set (test_second_run_changes_nothing)."""
    if fx_deployment.backend != "postgresql":
        pytest.skip("PostgreSQL scenario only")
    version = int(_psql("SHOW server_version_num"))
    assert _psql("SHOW wal_compression") == ("lz4" if version >= 150000 else "on")
    assert _psql("SHOW max_wal_size") == "4GB"
    stored = _psql("SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_file_settings "
                   "WHERE sourcefile LIKE '%postgresql.auto.conf' AND name IN ('wal_compression', 'max_wal_size')")
    assert stored == f"max_wal_size=4GB,wal_compression={'lz4' if version >= 150000 else 'on'}"
