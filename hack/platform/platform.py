#!/usr/bin/env python3
"""The local platform: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK with
two fake nodes, a Kafka broker (KRaft), Prometheus and git servers (git daemon; smart HTTP in
lighttpd with TLS and basic authentication; sshd with deploy keys), all on 127.0.0.1.

    platform.py up                build (cached) if needed, start what is not running, wait
                                  until ready, write .platform/env
    platform.py down              stop exactly the processes this script started (by pid)
    platform.py status            which parts run
    platform.py git-user NAME     (re)set NAME's https password to a new token; prints the
                                  token file's path
    platform.py deploy-key REPO   an ssh key that reads REPO (e.g. config.git) only; prints
                                  the private key's path

Project tooling, standard library only; binaries come from build.sh (~/.cache/mico-platform).
State (ports, pids, certificates, data, logs) lives in .platform/ at the repository root.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STATE = Path(os.environ.get("MICO_PLATFORM_STATE", ROOT / ".platform"))
NODES = ("kwok-node-0", "kwok-node-1")
PARTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kafka",
    "prometheus",
    "git-daemon",
    "git-https",
    "git-ssh",
    "demo-daemon",  # started by hack/demo.sh; stopped first
)


def log(message: str) -> None:
    print(f"[platform {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


# -- state -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports() -> dict[str, int]:
    path = STATE / "ports.json"
    known: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    names = (
        "etcd",
        "etcd-peer",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kwok",
        "kafka",
        "kafka-controller",
        "prometheus",
        "git",
        "git-https",
        "git-ssh",
    )
    changed = False
    for name in names:
        if name not in known:
            known[name] = free_port()
            changed = True
    if changed:
        path.write_text(json.dumps(known, indent=2))
    return known


def pid_file(part: str) -> Path:
    return STATE / "pids" / f"{part}.pid"


def running(part: str) -> int | None:
    path = pid_file(part)
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start(part: str, command: list[str | Path], env: dict[str, str] | None = None) -> None:
    if running(part):
        log(f"{part}: already running")
        return
    log(f"{part}: starting")
    logfile = open(STATE / "logs" / f"{part}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [str(c) for c in command],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=STATE,
        env={**os.environ, **(env or {})},
    )
    pid_file(part).write_text(str(process.pid))


def wait(what: str, check: Callable[[], bool], timeout: float = 120, part: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, subprocess.CalledProcessError, ValueError, urllib.error.URLError):
            pass
        if part and not running(part):
            tail = (STATE / "logs" / f"{part}.log").read_text(errors="replace")[-3000:]
            sys.exit(f"{part} exited while waiting for {what}; last log lines:\n{tail}")
        time.sleep(0.5)
    sys.exit(f"timed out after {timeout:.0f}s waiting for {what} (logs in {STATE / 'logs'})")


# -- certificates and kubeconfig -----------------------------------------------------------------


def certificates() -> None:
    pki = STATE / "pki"
    if (pki / "admin.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    log("generating certificates and service-account keys")
    new_ca(pki, "ca", "mico-platform-ca")
    sans = (
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    )
    signed(pki, "apiserver", "/CN=kube-apiserver", sans, ca="ca")
    signed(pki, "admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth", ca="ca")
    run("openssl", "genrsa", "-out", pki / "sa.key", "2048")
    run("openssl", "rsa", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub")


def new_ca(pki: Path, name: str, common_name: str) -> None:
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        f"/CN={common_name}",
        "-keyout",
        pki / f"{name}.key",
        "-out",
        pki / f"{name}.crt",
    )


def signed(pki: Path, name: str, subject: str, extension: str, ca: str) -> None:
    """A key and a certificate for it, signed by the CA `ca` of `pki`."""
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        pki / f"{name}.key",
        "-out",
        pki / f"{name}.csr",
    )
    ext = pki / f"{name}.ext"
    ext.write_text(extension + "\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        pki / f"{name}.csr",
        "-CA",
        pki / f"{ca}.crt",
        "-CAkey",
        pki / f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        ext,
        "-out",
        pki / f"{name}.crt",
    )


def kubeconfig(port: int) -> Path:
    pki = STATE / "pki"
    b64 = lambda p: base64.b64encode((pki / p).read_bytes()).decode()  # noqa: E731
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "mico-platform",
        "clusters": [
            {
                "name": "mico-platform",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [{"name": "mico-platform", "context": {"cluster": "mico-platform", "user": "admin"}}],
    }
    path = STATE / "kubeconfig"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def https_ok(url: str) -> bool:
    context = ssl.create_default_context(cafile=str(STATE / "pki" / "ca.crt"))
    context.load_cert_chain(STATE / "pki" / "admin.crt", STATE / "pki" / "admin.key")
    with urllib.request.urlopen(url, context=context, timeout=3) as response:  # noqa: S310 - loopback
        return bool(response.status == 200)


def insecure_ok(url: str) -> bool:
    context = ssl._create_unverified_context()  # noqa: S323 - components' self-signed serving certs
    with urllib.request.urlopen(url, context=context, timeout=3) as response:  # noqa: S310
        return bool(response.status == 200)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
        return bool(response.status == 200)


# -- the parts -----------------------------------------------------------------------------------


def link_binaries(cache: Path) -> Path:
    """.platform/bin: envtest's binaries where KUBEBUILDER_ASSETS has them, else the cached builds."""
    bin_dir = STATE / "bin"
    bin_dir.mkdir(exist_ok=True)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
        source = Path(assets) / name if assets and (Path(assets) / name).is_file() else cache / "bin" / name
        if not (source.is_file() and os.access(source, os.X_OK)):
            sys.exit(
                f"platform: {source} is not an executable file, so .platform/bin/{name} cannot point at it"
            )
        link = bin_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(source)
    return bin_dir


def built_cache() -> Path:
    """Runs build.sh, whose standard output is the cache directory and nothing else; refuses anything
    that is not one absolute path to a directory, so a stray line fails here, not later in a part."""
    build = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True)
    if build.returncode != 0:
        sys.exit(f"platform: hack/platform/build.sh failed (exit {build.returncode}); its log is above")
    lines = build.stdout.splitlines()
    cache = Path(lines[0]) if len(lines) == 1 else None
    if cache is None or not cache.is_absolute() or not cache.is_dir():
        sys.exit(f"platform: build.sh should print one cache directory, printed {build.stdout[:300]!r}")
    for needed in (cache / "kwok-stages", cache / "kafka" / ".complete"):
        if not needed.exists():
            sys.exit(f"platform: {needed} is missing from the build cache; remove {cache} and run again")
    return cache


def up_kubernetes(cache: Path, bin_dir: Path, p: dict[str, int]) -> Path:
    certificates()
    pki = STATE / "pki"
    etcd_url = f"http://127.0.0.1:{p['etcd']}"
    start(
        "etcd",
        [
            bin_dir / "etcd",
            "--name=default",
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-cluster=default=http://127.0.0.1:{p['etcd-peer']}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    wait("etcd /health", lambda: http_ok(f"{etcd_url}/health"), part="etcd")
    start(
        "kube-apiserver",
        [
            bin_dir / "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--service-node-port-range=30000-40000",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--v=0",
        ],
    )
    config = kubeconfig(p["apiserver"])
    wait(
        "kube-apiserver /readyz",
        lambda: https_ok(f"https://127.0.0.1:{p['apiserver']}/readyz"),
        part="kube-apiserver",
    )
    common = [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
    ]
    start(
        "kube-controller-manager",
        [
            bin_dir / "kube-controller-manager",
            *common,
            f"--secure-port={p['controller-manager']}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--concurrent-job-syncs=10",
        ],
    )
    start("kube-scheduler", [bin_dir / "kube-scheduler", *common, f"--secure-port={p['scheduler']}"])
    for part, port in (
        ("kube-controller-manager", p["controller-manager"]),
        ("kube-scheduler", p["scheduler"]),
    ):
        wait(
            f"{part} /healthz", lambda port=port: insecure_ok(f"https://127.0.0.1:{port}/healthz"), part=part
        )
    kubectl = [bin_dir / "kubectl", f"--kubeconfig={config}"]
    wait(
        "the default ServiceAccount (token controller)",
        lambda: run(*kubectl, "get", "serviceaccount", "default", "-n", "default").returncode == 0,
    )
    start(
        "kwok",
        [
            bin_dir / "kwok",
            f"--kubeconfig={config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{p['kwok']}",
            *[f"--config={c}" for c in stage_configs(cache)],
        ],
    )
    nodes = "\n---\n".join(json.dumps(fake_node(name)) for name in NODES)
    run(*kubectl, "apply", "--server-side", "--field-manager=mico-platform", "-f", "-", input=nodes)
    # a node made by an older platform keeps its status on apply: the capacity goes to the subresource
    apply_status = ("apply", "--server-side", "--field-manager=mico-platform", "--subresource=status")
    run(*kubectl, *apply_status, "-f", "-", input=nodes)
    wait(
        "a Ready KWOK node",
        lambda: (
            "True"
            in run(
                *kubectl,
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            ).stdout
        ),
        part="kwok",
    )
    return config


#: A pod with this label gets the kubelet outcome it names from kwok/kubelet-outcomes.yaml (a
#: failing readiness probe, a missing Secret) instead of KWOK's pod-ready stage.
OUTCOME_LABEL = "mico-platform/kubelet"


def stage_configs(cache: Path) -> list[Path]:
    """KWOK's default stages (from its module) plus the project's own, e.g. for Kaniko pods."""
    defaults = ("node-initialize", "node-heartbeat", "pod-delete")  # not pod-complete: see kwok/
    return [
        *(cache / "kwok-stages" / f"{name}.yaml" for name in defaults),
        without_outcome_label(cache / "kwok-stages" / "pod-ready.yaml", STATE / "kwok-pod-ready.yaml"),
        *sorted((HERE / "kwok").glob("*.yaml")),
    ]


def without_outcome_label(stage: Path, written: Path) -> Path:
    """KWOK's pod-ready stage, for pods without OUTCOME_LABEL only."""
    text = stage.read_text()
    anchor = "    matchExpressions:\n"
    if text.count(anchor) != 1:
        sys.exit(f"{stage}: not KWOK's pod-ready stage as expected (one matchExpressions list)")
    exclusion = f"    - key: '.metadata.labels[\"{OUTCOME_LABEL}\"]'\n      operator: 'DoesNotExist'\n"
    written.write_text(text.replace(anchor, anchor + exclusion))
    return written


def fake_node(name: str) -> dict[str, object]:
    capacity = {"cpu": "32", "memory": "256Gi", "ephemeral-storage": "500Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def up_kafka(cache: Path, p: dict[str, int]) -> str:
    home = STATE / "kafka"
    home.mkdir(exist_ok=True)
    bootstrap = f"127.0.0.1:{p['kafka']}"
    controller = f"127.0.0.1:{p['kafka-controller']}"
    properties = home / "server.properties"
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={controller}",
                f"listeners=PLAINTEXT://{bootstrap},CONTROLLER://{controller}",
                f"advertised.listeners=PLAINTEXT://{bootstrap},CONTROLLER://{controller}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={home / 'data'}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
    )
    (home / "log4j2.properties").write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\nappender.stdout.type=Console\n"
        "appender.stdout.name=STDOUT\nappender.stdout.layout.type=PatternLayout\n"
        "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
    )
    classpath = f"{cache / 'kafka' / 'libs'}/*"
    if not (home / "data" / "meta.properties").exists() and not running("kafka"):
        cluster_id = run("java", "-cp", classpath, "kafka.tools.StorageTool", "random-uuid").stdout.strip()
        run(
            "java",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            properties,
            "--ignore-formatted",
        )
    start(
        "kafka",
        [
            "java",
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={STATE / 'logs'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            properties,
        ],
    )
    wait(
        "the Kafka broker port",
        lambda: socket.create_connection(("127.0.0.1", p["kafka"]), timeout=2).close() is None,
        part="kafka",
    )
    wait(
        "a Kafka topic created, produced to and consumed from",
        lambda: (
            run("java", "-cp", classpath, HERE / "KafkaProbe.java", bootstrap, timeout=60).returncode == 0
        ),
        part="kafka",
    )
    return bootstrap


def up_prometheus(p: dict[str, int]) -> tuple[str, Path]:
    home = STATE / "prometheus"
    targets = home / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{p['prometheus']}"]}],
                    },
                    {
                        "job_name": "file",
                        "file_sd_configs": [{"files": [str(targets / "*.json")], "refresh_interval": "1s"}],
                    },
                ],
            },
            indent=2,
        )
    )
    start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{p['prometheus']}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{p['prometheus']}"
    wait("Prometheus /-/ready", lambda: http_ok(f"{url}/-/ready"), part="prometheus")
    return url, targets


def up_git(p: dict[str, int]) -> tuple[str, Path]:
    base = STATE / "git"
    base.mkdir(exist_ok=True)
    start(
        "git-daemon",
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={p['git']}",
            str(base),
        ],
    )
    url = f"git://127.0.0.1:{p['git']}"
    probe = base / "platform-probe.git"
    if not probe.exists():
        run("git", "init", "-q", "--bare", probe)

    def clone_works() -> bool:
        scratch = STATE / "tmp" / "git-probe"
        run("rm", "-rf", scratch)
        run("git", "clone", "-q", f"{url}/platform-probe.git", scratch)
        return True

    wait("a clone from the git daemon", clone_works, part="git-daemon")
    return url, base


#: Repository names the git servers' helpers accept (a path under GIT_ROOT, no traversal).
REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}\.git$")
HTTPS_USER = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def up_git_https(p: dict[str, int], base: Path) -> tuple[str, str, Path, Path]:
    """git's smart HTTP (git http-backend as CGI) in lighttpd: TLS from a CA of its own (so
    that a client that trusts only the system's CAs fails), basic authentication against a
    plain user file that lighttpd reads on every request (a password changes at once)."""
    home = STATE / "git-https"
    home.mkdir(exist_ok=True)
    pki = STATE / "pki"
    if not (pki / "git-server.crt").exists():
        log("generating the git servers' CA and certificate")
        new_ca(pki, "git-ca", "mico-platform-git-ca")
        signed(pki, "git-server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost", ca="git-ca")
    (home / "www").mkdir(exist_ok=True)  # empty: the user file and tokens beside it are not served
    users = home / "users"
    users.touch(mode=0o600)
    username = "mico"
    password_file = home / "tokens" / username
    if not password_file.exists():  # kept across restarts: a running daemon may read it
        git_user(username)
    (home / "lighttpd.conf").write_text(
        f"""server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv")
server.modules += ("mod_openssl")
server.bind = "127.0.0.1"
server.port = {p["git-https"]}
server.document-root = "{home / "www"}"
server.errorlog = "{STATE / "logs" / "git-https.error.log"}"
ssl.engine = "enable"
ssl.pemfile = "{pki / "git-server.crt"}"
ssl.privkey = "{pki / "git-server.key"}"
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ("/" => ("method" => "basic", "realm" => "mico-platform git", "require" => "valid-user"))
alias.url = ("/git" => "/usr/lib/git-core/git-http-backend")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.set-environment = ("GIT_PROJECT_ROOT" => "{base}", "GIT_HTTP_EXPORT_ALL" => "",
    "GIT_CONFIG_COUNT" => "1", "GIT_CONFIG_KEY_0" => "http.receivepack", "GIT_CONFIG_VALUE_0" => "false")
  setenv.add-environment = ("PATH" => "/usr/bin:/bin")
}}
"""
    )
    start("git-https", ["lighttpd", "-D", "-f", home / "lighttpd.conf"])
    url = f"https://127.0.0.1:{p['git-https']}/git"
    token = password_file.read_text()

    def advertises_refs() -> bool:
        context = ssl.create_default_context(cafile=str(pki / "git-ca.crt"))
        refs = f"{url}/platform-probe.git/info/refs?service=git-upload-pack"
        request = urllib.request.Request(refs)  # noqa: S310 - https on loopback
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()
        )
        with urllib.request.urlopen(request, context=context, timeout=3) as response:  # noqa: S310
            return b"# service=git-upload-pack" in response.read()

    wait("git over https (TLS, basic authentication, git http-backend)", advertises_refs, part="git-https")
    return url, username, password_file, pki / "git-ca.crt"


def git_user(name: str) -> Path:
    """Give the https user `name` a new token (replacing its old one); the token file's path."""
    if not HTTPS_USER.match(name):
        sys.exit(f"platform: {name!r} is not a user name for the git server (lower case, digits, -)")
    home = STATE / "git-https"
    if not (home / "users").exists():
        sys.exit("platform: the git server has no user file yet: run `platform.py up` first")
    tokens = home / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(24)
    users = home / "users"
    kept = [line for line in users.read_text().splitlines() if not line.startswith(f"{name}:")]
    replace_file(users, "".join(f"{line}\n" for line in [*kept, f"{name}:{token}"]))
    replace_file(tokens / name, token)
    return tokens / name


def replace_file(path: Path, text: str) -> None:
    """Write `text` to a 0600 file beside `path`, then rename it over `path`: readers see the old
    or the new contents, never a half-written file (as when Kubernetes updates a mounted Secret)."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    fresh.replace(path)


def up_git_ssh(p: dict[str, int], base: Path) -> tuple[str, Path]:
    """sshd on a loopback port, run as the platform's own user (root only when the platform
    runs as root), with its own host key; logins by deploy key only, each key's forced command
    serving `git-upload-pack` of one repository (see deploy_key)."""
    home = STATE / "git-ssh"
    home.mkdir(exist_ok=True)
    host_key = home / "host_ed25519"
    if not host_key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mico-platform-git", "-f", host_key)
    (home / "authorized_keys").touch(mode=0o600)
    serve = home / "git-serve"
    serve.write_text(
        f"""#!/bin/sh
# the forced command of a deploy key: git-upload-pack of the one repository the key is for
case "$SSH_ORIGINAL_COMMAND" in
  "git-upload-pack '$1'" | "git-upload-pack '/$1'") exec git-upload-pack "{base}/$1" ;;
esac
echo "this deploy key reads $1 only (asked: $SSH_ORIGINAL_COMMAND)" >&2
exit 1
"""
    )
    serve.chmod(0o755)
    user = getpass.getuser()
    root = os.geteuid() == 0
    (home / "sshd_config").write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{p['git-ssh']}",
                f"HostKey {host_key}",
                f"PidFile {home / 'sshd.pid'}",
                f"AuthorizedKeysFile {home / 'authorized_keys'}",
                f"AllowUsers {user}",
                f"PermitRootLogin {'forced-commands-only' if root else 'no'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if root:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    start("git-ssh", ["/usr/sbin/sshd", "-D", "-e", "-f", home / "sshd_config"])
    public = host_key.with_suffix(".pub").read_text().split()
    known_hosts = home / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{p['git-ssh']} {public[0]} {public[1]}\n")
    url = f"ssh://{user}@127.0.0.1:{p['git-ssh']}"
    probe_key = deploy_key("platform-probe.git")

    def clone_works() -> bool:
        scratch = STATE / "tmp" / "git-ssh-probe"
        run("rm", "-rf", scratch)
        ssh = f"ssh -i {probe_key} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={known_hosts}"
        run(
            "git",
            "clone",
            "-q",
            f"{url}/platform-probe.git",
            scratch,
            env={**os.environ, "GIT_SSH_COMMAND": ssh},
        )
        return True

    wait("a clone over ssh with a deploy key", clone_works, part="git-ssh")
    return url, known_hosts


def deploy_key(repo: str) -> Path:
    """The ed25519 key pair that reads `repo` only (an authorized_keys line with a forced
    command), made on first use; the private key's path."""
    if not REPO_NAME.match(repo):
        sys.exit(f"platform: {repo!r} is not a repository name under GIT_ROOT (like config.git)")
    keys = STATE / "git-ssh" / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys / repo.removesuffix(".git")
    if key.exists():
        return key
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deploy key of {repo}", "-f", key)
    serve = STATE / "git-ssh" / "git-serve"
    line = f'restrict,command="{serve} {repo}" {key.with_suffix(".pub").read_text().strip()}\n'
    with open(STATE / "git-ssh" / "authorized_keys", "a") as authorized:
        authorized.write(line)
    return key


def up(args: argparse.Namespace) -> None:
    for sub in ("pids", "logs", "tmp"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cache = built_cache()
    bin_dir = link_binaries(cache)
    p = ports()
    config = up_kubernetes(cache, bin_dir, p)
    bootstrap = up_kafka(cache, p)
    prometheus_url, targets = up_prometheus(p)
    git_url, git_root = up_git(p)
    https_url, https_user, https_password, git_ca = up_git_https(p, git_root)
    ssh_url, known_hosts = up_git_ssh(p, git_root)
    env = {
        "KUBECONFIG": str(config),
        "MICO_PLATFORM_BIN": str(bin_dir),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_CLASSPATH": f"{cache / 'kafka' / 'libs'}/*",
        "PROMETHEUS_URL": prometheus_url,
        "PROMETHEUS_TARGETS_DIR": str(targets),
        "GIT_BASE_URL": git_url,
        "GIT_ROOT": str(git_root),
        "GIT_HTTPS_URL": https_url,
        "GIT_HTTPS_CA": str(git_ca),
        "GIT_HTTPS_USERNAME": https_user,
        "GIT_HTTPS_PASSWORD_FILE": str(https_password),
        "GIT_SSH_URL": ssh_url,
        "GIT_SSH_KNOWN_HOSTS": str(known_hosts),
    }
    (STATE / "env").write_text("".join(f"export {k}={v!r}\n".replace("'", '"') for k, v in env.items()))
    log(f"ready in {time.monotonic() - started:.1f}s; source {STATE / 'env'}")


def down(args: argparse.Namespace) -> None:
    for part in reversed(PARTS):
        stop_part(part)
    left = leftovers()
    if left:
        sys.exit("still running after down: " + ", ".join(f"{pid} ({cmd[:80]})" for pid, cmd in left))
    log("stopped; no platform process is left")


def leftovers() -> list[tuple[int, str]]:
    """Processes whose command line names this platform's state directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(STATE) in command and "platform.py" not in command:
            found.append((int(entry.name), command))
    return found


def stop(args: argparse.Namespace) -> None:
    """Stop one part (e.g. kafka, for a failure test); `up` starts it again."""
    stop_part(args.name)


def stop_part(part: str) -> None:
    """SIGTERM to the part's process group, SIGKILL to whatever of it is left after 30 s."""
    pid = running(part)
    if pid is None:
        pid_file(part).unlink(missing_ok=True)
        return
    log(f"{part}: stopping pid {pid}")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while running(part) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # stragglers of the group, e.g. git daemon's children
        os.killpg(pid, signal.SIGKILL)
    pid_file(part).unlink(missing_ok=True)


def status(args: argparse.Namespace) -> None:
    for part in PARTS:
        pid = running(part)
        if part == "demo-daemon" and pid is None:
            continue
        print(f"{part:<24} {'running, pid ' + str(pid) if pid else 'stopped'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "stop", "status", "git-user", "deploy-key"))
    parser.add_argument(
        "name", nargs="?", help="stop: the part; git-user: the user; deploy-key: the repository"
    )
    args = parser.parse_args()
    if args.command in ("stop", "git-user", "deploy-key") and not args.name:
        parser.error(f"{args.command} needs a name")
    if args.command == "stop" and args.name not in PARTS:
        parser.error(f"stop: no part {args.name!r} (parts: {', '.join(PARTS)})")
    if args.command == "git-user":
        print(git_user(args.name))
    elif args.command == "deploy-key":
        print(deploy_key(args.name))
    else:
        {"up": up, "down": down, "stop": stop, "status": status}[args.command](args)


if __name__ == "__main__":
    main()
