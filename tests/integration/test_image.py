"""The container image (`make image`, hack/image/) run for real with podman, under the settings the
Helm chart gives the pod: a read-only root filesystem with a tmpfs /tmp and a volume for the state,
user 65532 from the image, all capabilities dropped, no privilege escalation.

The archive is loaded once per session into a storage of its own, so what runs is what
build/mico-reconciler.oci.tar holds (and what `skopeo copy` would push), not a leftover image in
the build's storage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from reconciler.render import Settings
from tests.connector_harness import Auditor, create_topics, event, free_port, produce
from tests.helpers import EXAMPLE
from tests.integration.conftest import (
    ConfigRepo,
    Platform,
    deployments,
    grant,
    kafka_settings,
    token_kubeconfig,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / "build" / "mico-reconciler.oci.tar"
PODMAN = ROOT / "hack" / "image" / "podman.sh"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
USER = 65532
STATE = "/var/lib/mico-reconciler"
#: The chart's container security settings, as podman options: a read-only root filesystem where
#: only /tmp (an emptyDir in the chart) and the volumes are writable (podman would also mount
#: /run and /var/tmp writable), all capabilities dropped, no privilege escalation.
RESTRICTED = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
)


@dataclass(frozen=True)
class Image:
    reference: str
    env: dict[str, str]

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(PODMAN), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def run(
        self, *args: str, options: Sequence[str] = (), network: str = "none", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The image's entrypoint with ARGS, in a container with the chart's restrictions."""
        return self.podman(
            "run",
            "--rm",
            f"--network={network}",
            *RESTRICTED,
            *options,
            self.reference,
            *args,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def image() -> Iterator[Image]:
    if not ARCHIVE.is_file():
        pytest.fail(f"{ARCHIVE.relative_to(ROOT)} is missing: run `make image` first", pytrace=False)
    # A storage of the session's own, with a short path (podman's sockets live under the run root).
    storage = Path(tempfile.mkdtemp(prefix="mico-image-test-"))
    env = {
        **os.environ,
        "MICO_IMAGE_CACHE": str(storage / "cache"),
        "MICO_IMAGE_RUNROOT": str(storage / "run"),
    }
    image = Image(f"localhost/mico-reconciler:{VERSION}", env)
    try:
        loaded = image.podman("load", "--quiet", "--input", str(ARCHIVE), timeout=300)
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip() == f"Loaded image: {image.reference}", (
            f"{ARCHIVE.relative_to(ROOT)} holds {loaded.stdout.strip()!r}; run `make image` again"
        )
        yield image
    finally:
        image.podman("rmi", "--all", "--force")
        shutil.rmtree(storage, ignore_errors=True)


def test_the_image_runs_as_the_chart_expects_it(image: Image) -> None:
    inspected = image.podman("image", "inspect", image.reference)
    assert inspected.returncode == 0, inspected.stderr
    (config,) = [i["Config"] for i in json.loads(inspected.stdout)]
    assert config["User"] == f"{USER}:{USER}"  # numeric, so runAsNonRoot can check it
    assert config["Entrypoint"] == ["mico-reconciler"]
    assert config["Cmd"] == ["--help"]
    assert config["WorkingDir"] == STATE
    assert "HOME=/tmp" in config["Env"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert len(labels["org.opencontainers.image.revision"]) == 40
    for key in ("title", "description", "source", "created"):
        assert labels[f"org.opencontainers.image.{key}"], key
    # What the reconciler shells out to (git, ssh for ssh URLs, ps to kill a timed-out git's
    # children), who it runs as, and that its
    # working directory (a volume in the chart: the root filesystem is read-only) is its own.
    tools = image.run(
        "-c",
        "git --version && ssh -V 2>&1 && command -v ps && id -u && id -g && stat -c %u:%g .",
        options=("--entrypoint", "/bin/sh"),
    )
    assert tools.returncode == 0, tools.stdout + tools.stderr
    git, ssh, ps, uid, gid, owner = tools.stdout.splitlines()
    assert ps == "/usr/bin/ps"
    assert git.startswith("git version")
    assert ssh.startswith("OpenSSH")
    assert (uid, gid, owner) == (str(USER), str(USER), f"{USER}:{USER}")


def test_help_is_the_default_command(image: Image) -> None:
    result = image.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mico-reconciler")
    assert "sync" in result.stdout


def test_the_status_page_templates_are_in_the_image(image: Image) -> None:
    """The wheel carries the templates and the stylesheet the daemon's pages are made of."""
    script = (
        "import sys; from reconciler.render import Settings; from reconciler.store import Store; "
        "from reconciler.web.pages import Pages; "
        "pages = Pages(Store('/tmp/state.db'), lambda: None, Settings()); "
        "[sys.stdout.write(f'{p.status} {p.content_type} {len(p.body)}\\n') "
        "for p in (pages.get(path, {}) for path in ('/', '/history', '/style.css'))]"
    )
    result = image.run("-c", script, options=("--entrypoint", "python"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [(status, kind) for status, kind, *_ in lines] == [
        ("200", "text/html;"),
        ("200", "text/html;"),
        ("200", "text/css;"),
    ]
    assert all(int(size) > 500 for *_, size in lines)


def test_validate_the_example_inside_the_container(image: Image) -> None:
    result = image.run("validate", "/config/mico.yaml", options=("--volume", f"{EXAMPLE.parent}:/config:ro"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "/config/mico.yaml: valid (4 services, 2 applications)"


def test_sync_once_from_the_container_with_a_service_account_token(
    image: Image,
    platform: Platform,
    kube: client.ApiClient,
    namespace: str,
    config_repo: ConfigRepo,
    tmp_path: Path,
) -> None:
    """`sync --once` inside the container (host network: the platform listens on 127.0.0.1)
    converges the example under exactly the reconciler's RBAC, configured by MICO_* variables as
    the chart does; the state database lands on the volume, and the next container reads it."""
    account = "mico-reconciler"
    grant(kube, namespace, account)
    kubeconfig = tmp_path / "kubeconfig"
    client.CoreV1Api(kube).create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    kubeconfig.write_text(token_kubeconfig(platform, kube, namespace, account))
    os.chown(kubeconfig, USER, USER)
    kubeconfig.chmod(0o400)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, USER, USER)
    revision = config_repo.push(EXAMPLE.read_text(), "the example")

    settings = {
        f"MICO_{key.upper()}": str(value) for key, value in kafka_settings(platform, namespace).items()
    }
    environment = [
        f"--env={key}={value}"
        for key, value in {
            **settings,
            "MICO_REPO": config_repo.url,
            "MICO_KUBECONFIG": "/etc/mico-reconciler/kubeconfig",
            "MICO_STATE_DB": f"{STATE}/state.db",
            "MICO_WORKDIR": f"{STATE}/repo",
        }.items()
    ]
    volumes = (
        f"--volume={kubeconfig}:/etc/mico-reconciler/kubeconfig:ro",
        f"--volume={state}:{STATE}",
        f"--volume={EXAMPLE.parent}:/config:ro",
    )
    rendered = image.run("render", "/config/mico.yaml", options=(*environment, *volumes))
    assert rendered.returncode == 0, rendered.stderr
    wanted = {
        o["metadata"]["name"]
        for o in yaml.safe_load_all(rendered.stdout)
        if o and o["kind"] == "Deployment" and o["metadata"]["namespace"] == namespace
    }
    assert len(wanted) == 5

    result = image.run("sync", "--once", options=(*environment, *volumes), network="host", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [json.loads(line) for line in result.stderr.splitlines() if '"outcome"' in line]
    assert (line["outcome"], line["revision"]) == ("succeeded", revision)
    assert set(deployments(kube, namespace)) == wanted

    history = image.run("history", "--output", "json", options=(*environment, *volumes))
    assert history.returncode == 0, history.stderr
    (run,) = json.loads(history.stdout)
    assert (run["outcome"], run["revision"]) == ("succeeded", revision)


def test_the_connector_runs_from_the_same_image(image: Image, platform: Platform, kafka_prefix: str) -> None:
    """The image and command the reconciler renders for connectors by default: it moves events
    on the platform's broker from inside the container, and stops cleanly on SIGTERM."""
    defaults = Settings()
    assert defaults.connector_image == image.reference
    names = {role: f"{kafka_prefix}{role}" for role in ("in", "out", "invalid", "dead", "tests")}
    create_topics(platform.kafka_bootstrap, names.values())
    sent = [event({"n": n}) for n in range(20)]
    produce(platform.kafka_bootstrap, names["in"], sent)
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": platform.kafka_bootstrap,
        "KAFKA_GROUP_ID": f"{kafka_prefix}connector",
        "KAFKA_TOPIC_INPUT": names["in"],
        "KAFKA_TOPIC_OUTPUT": names["out"],
        "KAFKA_TOPIC_INVALID_MESSAGE": names["invalid"],
        "KAFKA_TOPIC_DEAD_LETTER": names["dead"],
        "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT": names["tests"],
        "CONNECTOR_HTTP_PORT": str(free_port()),
    }
    started = image.podman(
        "run",
        "--detach",
        "--network=host",
        *RESTRICTED,
        f"--entrypoint={defaults.connector_command}",  # a Pod's `command`
        *(f"--env={k}={v}" for k, v in environment.items()),
        image.reference,
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    reader = Auditor(platform.kafka_bootstrap, [names["out"]])
    try:
        reader.read_until(lambda seen: len(seen[names["out"]]) >= len(sent), 60)
    except AssertionError as err:
        failure = str(err)
    else:
        failure = ""
    finally:
        reader.close()
        image.podman("stop", "--time=30", container)
        exit_code = image.podman("wait", container).stdout.strip()
        logs = image.podman("logs", container)
        image.podman("rm", "--force", container)
    assert not failure, failure + "\n" + logs.stdout + logs.stderr
    assert {e["id"] for e in reader.seen[names["out"]]} == {e["id"] for e in sent}
    assert exit_code == "0", logs.stdout + logs.stderr
    assert '"message": "connector stopped"' in logs.stderr
