"""docker/: the compose stack, the entrypoints, Prometheus and Grafana
provisioning — all checked without a Docker engine."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from .promql_names import BUILTIN, ROOT, RULES_DIR, exported_metric_names, metric_names_in, recorded_names

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
CLUSTER_COMPOSE = DOCKER / "docker-compose.cluster.yml"
ASTERISK_ENTRYPOINT = DOCKER / "asterisk" / "entrypoint.sh"
GATEWAY_ENTRYPOINT = DOCKER / "gateway" / "entrypoint.sh"
KAMAILIO_ENTRYPOINT = DOCKER / "kamailio" / "entrypoint.sh"
DASHBOARDS = DOCKER / "grafana" / "dashboards"
SECRET = "Zq8vN2pW5xK7rT4m"


# -- docker-compose --------------------------------------------------------------------------


def compose_config(env: dict[str, str], compose: Path = COMPOSE) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "GRAFANA_"))}
    return subprocess.run(
        [binary, "-f", str(compose), "config"], check=False, capture_output=True, text=True, timeout=120, cwd=DOCKER,
        env={**clean, **env},
    )


def test_docker_compose_accepts_the_stack():
    result = compose_config({"HOTLINE_AMI_SECRET": SECRET, "GRAFANA_ADMIN_PASSWORD": "admin-pw"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert {"asterisk", "redis", "gateway", "asr-worker", "prometheus", "grafana"} <= set(config["services"])
    asterisk = config["services"]["asterisk"]
    assert any(v.endswith(":/etc/hotline/asterisk_conf:ro") and "asterisk_conf" in v for v in asterisk["volumes"])
    workers = {name: service for name, service in config["services"].items() if name.startswith("asr-worker")}
    assert len(workers) >= 2, "the stack shows how transcription scales out"
    consumers, ports = set(), set()
    for worker in workers.values():
        assert worker["command"][:3] == ["hotline-asr", "worker", "--consumer"]
        assert worker["image"] == config["services"]["gateway"]["image"]
        assert "profiles" not in worker, "the ASR workers are part of the stack"
        # recordings are read where Asterisk wrote them, read-only; the model has its own volume
        assert "asterisk-spool:/var/spool/asterisk:ro" in worker["volumes"]
        assert worker["environment"]["HOTLINE_ASR_MODEL_PATH"].startswith("/models/")
        consumers.add(worker["command"][3])
        ports.add(worker["environment"]["HOTLINE_ASR_METRICS_PORT"])
    # host network: each worker needs its own consumer name (same hostname, pid 1) and port
    assert len(consumers) == len(ports) == len(workers)
    # the gateway sees the recordings where Asterisk writes them (the voice-message check), read-only
    gateway = config["services"]["gateway"]
    assert "asterisk-spool:/var/spool/asterisk:ro" in gateway["volumes"]
    assert gateway["environment"]["HOTLINE_FLOWS_RECORDINGS_ROOT"] == "/"
    assert any(v.endswith(":/etc/prometheus/rules:ro") for v in config["services"]["prometheus"]["volumes"])
    # the dialer's write-ahead records and claims must survive a Redis crash
    redis_command = config["services"]["redis"]["command"]
    assert redis_command[redis_command.index("--appendfsync") + 1] == "always"


def test_docker_compose_refuses_to_run_without_the_ami_secret():
    result = compose_config({"GRAFANA_ADMIN_PASSWORD": "admin-pw"})
    assert result.returncode != 0
    assert "HOTLINE_AMI_SECRET" in result.stderr


def test_services_share_the_loopback_that_manager_conf_permits():
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        assert service.get("network_mode") == "host", name
    manager = (ROOT / "asterisk_conf" / "manager.conf").read_text()
    assert "bindaddr = 127.0.0.1" in manager


# -- docker-compose.cluster.yml: several machines --------------------------------------------------

CLUSTER_ENV = {
    "HOTLINE_AMI_SECRET": SECRET, "GRAFANA_ADMIN_PASSWORD": "admin-pw", "HOTLINE_REDIS_PASSWORD": "r3disPassw0rd",
    "HOTLINE_TRUNK_PEERS": "198.51.100.10/32,198.51.100.11/32", "HOTLINE_PROXY_ADDR": "192.0.2.10",
    "HOTLINE_NODE1_ADDR": "192.0.2.11", "HOTLINE_NODE2_ADDR": "192.0.2.12",
    "HOTLINE_MESSAGES_NFS_ADDR": "192.0.2.20", "HOTLINE_MESSAGES_NFS_PATH": "/srv/hotline/messages",
}
MACHINES = {
    "proxy": {"kamailio", "sentinel3", "prometheus", "grafana"},
    "node1": {"ast1", "gw1", "asr-worker-1", "redis-primary", "sentinel1"},
    "node2": {"ast2", "gw2", "asr-worker-2", "redis-replica", "sentinel2"},
}


@pytest.fixture(scope="module")
def cluster() -> dict:
    result = compose_config(CLUSTER_ENV, CLUSTER_COMPOSE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_cluster_compose_puts_each_service_on_one_machine(cluster):
    by_profile: dict[str, set[str]] = {}
    for name, service in cluster.items():
        (profile,) = service["profiles"]
        by_profile.setdefault(profile, set()).add(name)
        # host network as in docker-compose.yml: real addresses for SIP, RTP and the trunk ACL
        assert service["network_mode"] == "host", name
    assert by_profile == MACHINES
    # the same images as the single-machine stack
    single = yaml.safe_load(compose_config({"HOTLINE_AMI_SECRET": SECRET, "GRAFANA_ADMIN_PASSWORD": "pw"}).stdout)
    single = single["services"]
    assert cluster["ast1"]["image"] == cluster["ast2"]["image"] == single["asterisk"]["image"]
    assert cluster["gw1"]["image"] == cluster["asr-worker-2"]["image"] == single["gateway"]["image"]


def test_cluster_gateways_watch_their_own_node_and_back_up_the_other(cluster):
    for number, other in ((1, 2), (2, 1)):
        node, gateway = cluster[f"ast{number}"], cluster[f"gw{number}"]
        assert node["profiles"] == gateway["profiles"], "AMI stays on the node's loopback"
        env = gateway["environment"]
        assert (env["HOTLINE_AMI_HOST"], env["HOTLINE_MONITOR_NODE"]) == ("127.0.0.1", f"ast{number}")
        assert env["HOTLINE_AGI_HOST"] == CLUSTER_ENV[f"HOTLINE_NODE{number}_ADDR"]
        node_env = node["environment"]
        assert node_env["HOTLINE_AGI_URL"] == f"agi://gw{number}:4573"
        assert node_env["HOTLINE_AGI_BACKUP_URL"] == f"agi://gw{other}:4573"
        assert node_env["HOTLINE_NODE_NAME"] == f"ast{number}"
        assert node_env["HOTLINE_SIP_BIND"] == f"{CLUSTER_ENV[f'HOTLINE_NODE{number}_ADDR']}:5060"
        assert node_env["HOTLINE_TRUNK_PROXY"] == CLUSTER_ENV["HOTLINE_PROXY_ADDR"]
        assert "hotline-messages:/var/spool/asterisk/hotline/messages:rw" in node["volumes"]
        # both nodes' voice messages, read-only: the gateway checks a recording before "saved"
        assert "hotline-messages:/var/spool/asterisk/hotline/messages:ro" in gateway["volumes"]
        assert env["HOTLINE_FLOWS_RECORDINGS_ROOT"] == "/"
        hosts = dict(entry.split(":", 1) for entry in node["extra_hosts"])
        assert hosts[f"gw{other}"] == CLUSTER_ENV[f"HOTLINE_NODE{other}_ADDR"]
    kamailio = cluster["kamailio"]["environment"]
    assert kamailio["HOTLINE_PROXY_NODES"] == "192.0.2.11:5060,192.0.2.12:5060"
    assert kamailio["HOTLINE_PROXY_LISTEN"] == "udp:192.0.2.10:5060"
    assert kamailio["HOTLINE_PROXY_TRUNK_PEERS"] == CLUSTER_ENV["HOTLINE_TRUNK_PEERS"]


def test_cluster_redis_clients_ask_the_three_sentinels(cluster):
    sentinels = "sentinel1:26379,sentinel2:26379,sentinel3:26379"
    for name in ("gw1", "gw2", "asr-worker-1", "asr-worker-2"):
        env = cluster[name]["environment"]
        assert env["HOTLINE_REDIS_SENTINELS"] == sentinels, name
        assert env["HOTLINE_REDIS_SENTINEL_MASTER"] == "hotline", name
        hosts = dict(entry.split(":", 1) for entry in cluster[name]["extra_hosts"])
        assert {hosts[f"sentinel{n}"] for n in (1, 2, 3)} == {"192.0.2.10", "192.0.2.11", "192.0.2.12"}
    for name in ("ast1", "ast2"):
        assert cluster[name]["environment"]["HOTLINE_MISSED_REDIS"].startswith("redis+sentinel://")
        assert cluster[name]["environment"]["HOTLINE_MISSED_REDIS"].endswith(f"@{sentinels}/hotline/0")
    assert cluster["redis-replica"]["environment"]["REDIS_REPLICAOF"] == CLUSTER_ENV["HOTLINE_NODE1_ADDR"]
    for name in ("redis-primary", "redis-replica", "sentinel1", "sentinel2", "sentinel3"):
        script = cluster[name]["command"][-1]
        # secrets reach the servers from the container's environment, not from the command line
        assert CLUSTER_ENV["HOTLINE_REDIS_PASSWORD"] not in script, name
        assert "$$HOTLINE_REDIS_PASSWORD" in script, name
    assert "appendfsync always" in cluster["redis-primary"]["command"][-1]
    assert "sentinel monitor hotline %s 6379 2" in cluster["sentinel1"]["command"][-1]


def test_cluster_asr_workers_read_the_shared_messages_with_their_own_names(cluster):
    workers = {name: service for name, service in cluster.items() if name.startswith("asr-worker")}
    assert len(workers) == 2
    assert {w["command"][3] for w in workers.values()} == {"asr-1", "asr-2"}
    for worker in workers.values():
        assert "hotline-messages:/var/spool/asterisk/hotline/messages:ro" in worker["volumes"]


@pytest.mark.parametrize("missing", ["HOTLINE_TRUNK_PEERS", "HOTLINE_PROXY_ADDR", "HOTLINE_NODE2_ADDR",
                                     "HOTLINE_REDIS_PASSWORD", "HOTLINE_AMI_SECRET", "HOTLINE_MESSAGES_NFS_PATH"])
def test_cluster_compose_refuses_to_run_without_its_addresses_and_secrets(missing):
    env = {k: v for k, v in CLUSTER_ENV.items() if k != missing}
    result = compose_config(env, CLUSTER_COMPOSE)
    assert result.returncode != 0
    assert missing in result.stderr


# -- the Asterisk entrypoint ------------------------------------------------------------------------


def run_asterisk_entrypoint(tmp_path: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    base = {
        "PATH": os.environ["PATH"],
        "HOTLINE_CONF_SRC": str(ROOT / "asterisk_conf"),
        "HOTLINE_SITE_CONF": str(tmp_path / "site"),
        "ASTERISK_ETC": str(tmp_path / "etc"),
        "ASTERISK_LOG_DIR": str(tmp_path / "log"),
        "ASTERISK_USER": "no-such-user-hotline-test",
    }
    return subprocess.run(["sh", str(ASTERISK_ENTRYPOINT), *(command or ("echo", "asterisk started"))],
                          check=False, capture_output=True, text=True, timeout=60, env={**base, **env})


def test_asterisk_entrypoint_installs_the_config_and_writes_the_secret(tmp_path):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "asterisk started"
    etc = tmp_path / "etc"
    for source in (ROOT / "asterisk_conf").glob("*.conf"):
        assert (etc / source.name).read_text() == source.read_text()
    secret_file = etc / "hotline-secrets" / "ami-gateway.conf"
    assert f"secret = {SECRET}\n" in secret_file.read_text()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o640
    globals_conf = (etc / "hotline-globals.conf").read_text()
    assert "HOTLINE_AGI = agi://127.0.0.1:4573" in globals_conf
    assert "HOTLINE_MISSED_REDIS = redis://127.0.0.1:6379/0" in globals_conf
    assert '#tryinclude "hotline-secrets/ami-gateway.conf"' in (etc / "manager.conf").read_text()


def test_asterisk_entrypoint_refuses_to_start_without_the_secret(tmp_path):
    result = run_asterisk_entrypoint(tmp_path, {})
    assert result.returncode == 64
    assert "refusing to start" in result.stderr
    assert "asterisk started" not in result.stdout
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("secret", ["short", "has space in it 123456", "semi;colon1234567890", "a\nb" * 10])
def test_asterisk_entrypoint_refuses_secrets_that_would_break_the_config(tmp_path, secret):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": secret})
    assert result.returncode == 64, result.stderr
    assert "asterisk started" not in result.stdout


def test_asterisk_entrypoint_reads_a_secret_file_and_site_files(tmp_path):
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text(SECRET + "\n")
    site = tmp_path / "site"
    (site / "hotline-secrets").mkdir(parents=True)
    (site / "pjsip-carrier.conf").write_text("[carrier](carrier-endpoint)\n")
    (site / "hotline-globals.conf").write_text("HOTLINE_LAB = 0\n")
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET_FILE": str(secret_file)})
    assert result.returncode == 0, result.stderr
    etc = tmp_path / "etc"
    assert (etc / "hotline-secrets" / "ami-gateway.conf").read_text().endswith(f"secret = {SECRET}\n")
    assert (etc / "pjsip-carrier.conf").read_text() == "[carrier](carrier-endpoint)\n"
    assert (etc / "hotline-globals.conf").read_text() == "HOTLINE_LAB = 0\n", "the site's globals win"


def test_asterisk_entrypoint_refuses_an_unreadable_secret_file(tmp_path):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET_FILE": str(tmp_path / "missing")})
    assert result.returncode == 64 and "cannot read" in result.stderr


def test_asterisk_entrypoint_needs_the_mounted_configuration(tmp_path):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET, "HOTLINE_CONF_SRC": str(tmp_path)})
    assert result.returncode == 64 and "asterisk_conf" in result.stderr


def test_asterisk_entrypoint_configures_one_node_of_several(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "pjsip-carrier.conf").write_text("[carrier](carrier-endpoint)\n")
    result = run_asterisk_entrypoint(tmp_path, {
        "HOTLINE_AMI_SECRET": SECRET, "HOTLINE_NODE_NAME": "ast2", "HOTLINE_SIP_BIND": "192.0.2.12:5060",
        "HOTLINE_TRUNK_PROXY": "192.0.2.10", "HOTLINE_AGI_URL": "agi://gw2:4573",
        "HOTLINE_AGI_BACKUP_URL": "agi://gw1:4573",
    })
    assert result.returncode == 0, result.stderr
    etc = tmp_path / "etc"
    assert "[options]\nsystemname = ast2\n" in (etc / "asterisk.conf").read_text()
    pjsip = (etc / "pjsip.conf").read_text()
    assert "bind = 192.0.2.12:5060\n" in pjsip and "bind = 127.0.0.1:5060" not in pjsip
    carrier = (etc / "pjsip-carrier.conf").read_text()
    assert carrier.startswith("[carrier](carrier-endpoint)\n")
    assert "[carrier-via-proxy](carrier-identify)\nendpoint = carrier\nmatch = 192.0.2.10\n" in carrier
    globals_conf = (etc / "hotline-globals.conf").read_text()
    assert "HOTLINE_AGI = agi://gw2:4573\nHOTLINE_AGI_BACKUP = agi://gw1:4573\n" in globals_conf


def test_asterisk_entrypoint_leaves_a_single_node_as_it_was(tmp_path):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    for name in ("asterisk.conf", "pjsip.conf"):
        assert (tmp_path / "etc" / name).read_text() == (ROOT / "asterisk_conf" / name).read_text()
    assert "HOTLINE_AGI_BACKUP = \n" in (tmp_path / "etc" / "hotline-globals.conf").read_text()


@pytest.mark.parametrize("env, message", [
    ({"HOTLINE_TRUNK_PROXY": "192.0.2.10"}, "pjsip-carrier.conf"),
    ({"HOTLINE_NODE_NAME": "ast 1"}, "HOTLINE_NODE_NAME"),
    ({"HOTLINE_SIP_BIND": "192.0.2.12"}, "HOTLINE_SIP_BIND"),
    ({"HOTLINE_TRUNK_PROXY": "proxy;x"}, "HOTLINE_TRUNK_PROXY"),
])
def test_asterisk_entrypoint_refuses_a_broken_node_setting(tmp_path, env, message):
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET, **env})
    assert result.returncode == 64 and message in result.stderr, result.stderr
    assert "asterisk started" not in result.stdout


def test_asterisk_entrypoint_fails_when_the_line_it_replaces_moved(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "asterisk_conf", conf)
    pjsip = conf / "pjsip.conf"
    pjsip.write_text(pjsip.read_text().replace("bind = 127.0.0.1:5060", "bind = 0.0.0.0:5060"))
    result = run_asterisk_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET, "HOTLINE_CONF_SRC": str(conf),
                                                "HOTLINE_SIP_BIND": "192.0.2.12:5060"})
    assert result.returncode == 64 and "bind = 127.0.0.1:5060" in result.stderr


# -- the gateway entrypoint --------------------------------------------------------------------------


def run_gateway_entrypoint(tmp_path: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("hotline-gateway", "hotline-asr"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        stub.chmod(0o755)
    return subprocess.run(["sh", str(GATEWAY_ENTRYPOINT), *command], check=False, capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{bin_dir}:{os.environ['PATH']}", **env})


def test_gateway_entrypoint_runs_the_gateway_with_a_secret(tmp_path):
    result = run_gateway_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hotline-gateway run"


def test_gateway_entrypoint_refuses_the_gateway_without_a_secret(tmp_path):
    result = run_gateway_entrypoint(tmp_path, {}, "hotline-gateway", "run")
    assert result.returncode == 64 and "refusing to start" in result.stderr
    result = run_gateway_entrypoint(tmp_path, {"HOTLINE_AMI_SECRET_FILE": str(tmp_path / "missing")},
                                    "hotline-gateway", "run")
    assert result.returncode == 64 and "cannot read" in result.stderr


def test_gateway_entrypoint_lets_other_commands_through(tmp_path):
    result = run_gateway_entrypoint(tmp_path, {}, "hotline-asr", "worker")
    assert result.returncode == 0 and result.stdout.strip() == "hotline-asr worker"
    result = run_gateway_entrypoint(tmp_path, {}, "hotline-gateway", "check-flows")
    assert result.returncode == 0


# -- the Kamailio entrypoint --------------------------------------------------------------------------

KAMAILIO_ENV = {"HOTLINE_PROXY_LISTEN": "udp:127.0.0.50:5060", "HOTLINE_PROXY_TRUNK_PEERS": "127.0.0.53/32",
                "HOTLINE_PROXY_NODES": "127.0.0.51:5060,127.0.0.52:5060"}


def run_kamailio_entrypoint(tmp_path: Path, env: dict[str, str], *command: str,
                            stub: bool = True) -> subprocess.CompletedProcess:
    """With ``stub``, a kamailio on PATH that prints its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if stub:
        (bin_dir / "kamailio").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
        (bin_dir / "kamailio").chmod(0o755)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}:/usr/sbin", "HOTLINE_KAMAILIO_RUN": str(tmp_path / "run"),
            "HOTLINE_KAMAILIO_CFG": str(ROOT / "kamailio" / "kamailio.cfg"),
            "HOTLINE_KAMAILIO_USER": "no-such-user-hotline-test"}
    return subprocess.run(["sh", str(KAMAILIO_ENTRYPOINT), *command], check=False, capture_output=True, text=True,
                          timeout=60, env={**base, **env})


def test_kamailio_entrypoint_turns_the_environment_into_defines_and_a_dispatcher_list(tmp_path):
    result = run_kamailio_entrypoint(tmp_path, {**KAMAILIO_ENV, "HOTLINE_PROXY_PROBE_INTERVAL": "2"})
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    arguments = result.stdout.splitlines()
    assert arguments[:6] == ["-DD", "-E", "-P", f"{run}/kamailio.pid", "-Y", str(run)]
    defines = [arguments[i + 1] for i, a in enumerate(arguments) if a == "-A"]
    assert defines == ["LISTEN=udp:127.0.0.50:5060", 'TRUNK_PEERS="127.0.0.53/32"',
                       f'DISPATCHER_LIST="{run}/dispatcher.list"', "PROBE_INTERVAL=2", "HOLDDOWN=300",
                       "PIKE_DENSITY=50"]
    entries = [line for line in (run / "dispatcher.list").read_text().splitlines() if not line.startswith("#")]
    assert entries == ["1 sip:127.0.0.51:5060 0 0", "1 sip:127.0.0.52:5060 0 0"]


def test_kamailio_entrypoint_check_passes_the_real_config_check(tmp_path):
    if shutil.which("kamailio") is None and shutil.which("kamailio", path="/usr/sbin") is None:
        pytest.skip("kamailio is not installed (Debian package kamailio)")
    result = run_kamailio_entrypoint(tmp_path, KAMAILIO_ENV, "check", stub=False)
    assert result.returncode == 0, result.stderr
    assert "config file ok" in result.stdout + result.stderr


@pytest.mark.parametrize("name, value", [
    ("HOTLINE_PROXY_TRUNK_PEERS", ""), ("HOTLINE_PROXY_TRUNK_PEERS", '1.2.3.4"; exit'),
    ("HOTLINE_PROXY_LISTEN", "0.0.0.0"), ("HOTLINE_PROXY_NODES", "ast1"), ("HOTLINE_PROXY_PROBE_INTERVAL", "0"),
])
def test_kamailio_entrypoint_refuses_a_missing_or_broken_setting(tmp_path, name, value):
    result = run_kamailio_entrypoint(tmp_path, {**KAMAILIO_ENV, name: value})
    assert result.returncode == 64, result.stdout + result.stderr
    assert result.stdout == ""


def test_entrypoints_are_executable_posix_sh():
    for script in (ASTERISK_ENTRYPOINT, GATEWAY_ENTRYPOINT, KAMAILIO_ENTRYPOINT):
        assert script.stat().st_mode & 0o111, f"{script} must be executable"
        assert script.read_text().startswith("#!/bin/sh\n")
        assert subprocess.run(["sh", "-n", str(script)], check=False, capture_output=True).returncode == 0


# -- Dockerfiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*/Dockerfile")), ids=lambda p: p.parent.name)
def test_dockerfile_copies_only_files_that_exist(dockerfile):
    """Build context is the repository root; every COPY source (not --from) must be there."""
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}"
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".cache" in dockerignore and ".venv" in dockerignore


# -- Prometheus -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-cluster.yml"])
def test_promtool_accepts_prometheus_yml_with_our_rules(tmp_path, config):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    # the container layout: /etc/prometheus/prometheus.yml and /etc/prometheus/rules/
    shutil.copy(DOCKER / "prometheus" / config, tmp_path / "prometheus.yml")
    shutil.copytree(RULES_DIR, tmp_path / "rules")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"SUCCESS: (\d+) rule files found", result.stdout + result.stderr)
    assert found and int(found.group(1)) == len(list(RULES_DIR.glob("*.yml")))


def test_prometheus_scrapes_the_gateway_where_it_listens():
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["hotline-gateway"]["static_configs"][0]["targets"]
    compose = yaml.safe_load(COMPOSE.read_text())
    env = compose["services"]["gateway"]["environment"]
    assert targets == [f"{env['HOTLINE_HTTP_HOST']}:{env['HOTLINE_HTTP_PORT']}"]
    alerts = (RULES_DIR / "hotline-alerts.yml").read_text()
    assert 'job="hotline-gateway"' in alerts
    asr_ports = {service["environment"]["HOTLINE_ASR_METRICS_PORT"] for name, service in compose["services"].items()
                 if name.startswith("asr-worker")}
    assert set(jobs["hotline-asr"]["static_configs"][0]["targets"]) == {f"127.0.0.1:{port}" for port in asr_ports}


def test_cluster_prometheus_scrapes_both_gateways_and_both_asr_workers(cluster):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus-cluster.yml").read_text())
    jobs = {job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
            for job in config["scrape_configs"]}
    hosts = dict(entry.split(":", 1) for entry in cluster["prometheus"]["extra_hosts"])
    for job, services, host_key, port_key in (
        ("hotline-gateway", ("gw1", "gw2"), "HOTLINE_HTTP_HOST", "HOTLINE_HTTP_PORT"),
        ("hotline-asr", ("asr-worker-1", "asr-worker-2"), "HOTLINE_ASR_METRICS_HOST", "HOTLINE_ASR_METRICS_PORT"),
    ):
        listening = {f"{cluster[s]['environment'][host_key]}:{cluster[s]['environment'][port_key]}" for s in services}
        scraped = {f"{hosts[target.split(':')[0]]}:{target.split(':')[1]}" for target in jobs[job]}
        assert scraped == listening, job
    assert f"{DOCKER}/prometheus/prometheus-cluster.yml:/etc/prometheus/prometheus.yml:ro" in \
        cluster["prometheus"]["volumes"]


# -- Grafana ------------------------------------------------------------------------------------------


def _panels(items: list[dict]) -> list[dict]:
    found = []
    for panel in items:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def dashboards() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted(DASHBOARDS.glob("*.json"))]


def test_grafana_provisioning_points_at_our_prometheus_and_dashboards():
    datasources = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    listen = next(a for a in prometheus["command"] if a.startswith("--web.listen-address="))
    assert source["url"] == "http://" + listen.split("=", 1)[1]
    providers = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/hotline.yml").read_text())
    (provider,) = providers["providers"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert dashboards(), "at least one dashboard is provisioned"


def test_every_dashboard_query_reads_only_metrics_that_exist():
    """Each panel's expr (and each template query) names only our metrics or recording rules."""
    known = exported_metric_names() | recorded_names() | BUILTIN
    for path, board in dashboards():
        exprs = []
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                exprs.append((panel["title"], target["expr"]))
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text or "")
            exprs.append((f"${variable['name']}", inner.group(1) if inner else text))
        assert exprs, path
        for title, expr in exprs:
            unknown = metric_names_in(expr) - known
            assert not unknown, f"{path.name} / {title}: {expr} reads unknown {unknown}"


def test_dashboard_shows_the_hotline_rates_and_trunk_health():
    (_path, board), = dashboards()
    text = json.dumps(board)
    for name in ("queue:hotline_connection_rate:ratio_24h", "queue:hotline_answered_within_sl_rate:ratio_24h",
                 "queue:hotline_effective_connection_rate:ratio_24h", "queue:hotline_broad_connection_rate:ratio_24h",
                 "queue:hotline_abandon_rate:ratio_24h", "queue:hotline_asa_seconds:24h",
                 "hotline_trunk_registered", "hotline_trunk_reachable", "hotline_trunk_rtt_seconds",
                 "hotline_trunk_channels_in_use", "hotline_queue_longest_wait_seconds", "hotline_ami_connected"):
        assert name in text, name
    panels = [p for p in _panels(board["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
