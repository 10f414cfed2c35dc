"""deploy/: the Kubernetes manifests parse, and keep the invariants the daemon relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cc_executor.executor.config.claude import ClaudeConfig
from cc_executor.executor.config.policyfile import parse_policy
from cc_executor.executor.config.server import ServerConfig, config_from_env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None and "kind" in doc and "metadata" in doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_statefulset_probes_secret_and_volume() -> None:
    docs = documents()
    sts = docs[("StatefulSet", "ccx")]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["serviceName"] == "ccx-headless"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    env = {e["name"]: e for e in container["env"]}
    assert env["CCX_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "ccx-tokens"
    assert env["CCX_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CCX_HOST"]["value"] == "0.0.0.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["state"] == env["CCX_STATE_DIR"]["value"]
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    policy_dir = mounts["policy"]
    assert env["CCX_POLICY"]["value"] == f"{policy_dir}/policy.toml"
    configmap = docs[("ConfigMap", pod["volumes"][0]["configMap"]["name"])]
    parse_policy(configmap["data"]["policy.toml"], "deploy/configmap.yaml")
    # The daemon accepts the pod's environment as a whole (the policy file aside).
    settings = container_env(container)
    settings.pop("CCX_POLICY")
    config_from_env(settings, check=False)


def test_services_route_new_runs_and_reach_each_pod() -> None:
    docs = documents()
    selector = docs[("StatefulSet", "ccx")]["spec"]["selector"]["matchLabels"]
    balanced = docs[("Service", "ccx")]["spec"]
    headless = docs[("Service", "ccx-headless")]["spec"]
    assert balanced["selector"] == headless["selector"] == selector
    assert headless["clusterIP"] == "None"
    # A draining pod must stay reachable for attach.
    assert headless["publishNotReadyAddresses"] is True
    assert docs[("Secret", "ccx-tokens")]["stringData"]["CCX_TOKENS"]


def test_the_grace_period_covers_the_drain() -> None:
    """terminationGracePeriodSeconds >= the longest a graceful shutdown can take (daemon/daemon.py
    Daemon.shutdown): tell clients, let runs finish, end the rest through the whole ladder,
    deliver completions and close."""
    pod = documents()[("StatefulSet", "ccx")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(container)
    defaults = ServerConfig(state_dir="/unused")
    sup = defaults.supervision
    shutdown_grace = float(env.get("CCX_SHUTDOWN_GRACE", defaults.shutdown_grace))
    term_grace = float(env.get("CCX_TERM_GRACE", sup.term_grace))
    interrupt = float(env.get("CCX_CLAUDE_INTERRUPT_GRACE", ClaudeConfig().interrupt_grace))
    ladder = interrupt + term_grace + sup.kill_wait + sup.drain_timeout + 1.0
    drain = defaults.connect_timeout + shutdown_grace + ladder + defaults.connect_timeout
    margin = 5.0
    assert pod["terminationGracePeriodSeconds"] >= drain + margin, (
        pod["terminationGracePeriodSeconds"],
        drain,
    )
