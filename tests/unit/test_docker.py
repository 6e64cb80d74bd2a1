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
ASTERISK_ENTRYPOINT = DOCKER / "asterisk" / "entrypoint.sh"
GATEWAY_ENTRYPOINT = DOCKER / "gateway" / "entrypoint.sh"
DASHBOARDS = DOCKER / "grafana" / "dashboards"
SECRET = "Zq8vN2pW5xK7rT4m"


# -- docker-compose --------------------------------------------------------------------------


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "GRAFANA_"))}
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "config"], check=False, capture_output=True, text=True, timeout=120, cwd=DOCKER,
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


def test_entrypoints_are_executable_posix_sh():
    for script in (ASTERISK_ENTRYPOINT, GATEWAY_ENTRYPOINT):
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


def test_promtool_accepts_prometheus_yml_with_our_rules(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    # the container layout: /etc/prometheus/prometheus.yml and /etc/prometheus/rules/
    shutil.copy(DOCKER / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
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
