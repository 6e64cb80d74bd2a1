"""The lab's several-node topology and each node's Asterisk configuration.

``hotline-lab up --nodes 2``: the carrier (127.0.0.2) sends its calls to a
Kamailio front door (127.0.0.10:5060), which spreads them over the Asterisk
nodes. Node ``ast1`` is the single-node lab's Asterisk (/etc/asterisk,
127.0.0.1); every further node is a second Asterisk in the same chroot with its
own configuration directory, run, log, spool and AstDB directories and its own
loopback address for SIP and AMI (like the lab carrier). Each node has its own
gateway (FastAGI port, HTTP port, AMI monitor of that node only, so every call
is counted once) and names the other node's gateway as its FastAGI backup.

A node's files are asterisk_conf/ with a few lines changed; every change names
the exact line it replaces and fails loudly when the line is not there once, so
an edit of asterisk_conf/ cannot silently leave a node on the wrong address.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .errors import LabError
from .install import LabConfigValues, render_generated

__all__ = ["FRONT_DOOR", "NODES", "Node", "patch_once", "render_node", "render_carrier_for_nodes"]

#: Kamailio's SIP address (the trunk side's front door)
FRONT_DOOR = ("127.0.0.10", 5060)


@dataclass(frozen=True)
class Node:
    name: str
    #: SIP (5060) and AMI (5038) address of the node
    host: str
    #: FastAGI and HTTP ports of the node's own gateway (127.0.0.1)
    agi_port: int
    http_port: int

    @property
    def suffix(self) -> str:
        """Directory suffix: '' for ast1 (the single-node lab's dirs), '-astN' otherwise."""
        return "" if self.name == "ast1" else f"-{self.name}"

    @property
    def etc(self) -> str:
        return f"/etc/asterisk{self.suffix}"

    @property
    def config_file(self) -> str | None:
        return None if not self.suffix else f"{self.etc}/asterisk.conf"

    @property
    def run_dir(self) -> str:
        return f"/run/asterisk{self.suffix}"

    @property
    def log_dir(self) -> str:
        return f"/var/log/asterisk{self.suffix}"

    @property
    def runtime_dirs(self) -> tuple[str, ...]:
        return tuple(f"{base}{self.suffix}" for base in (
            "/run/asterisk", "/var/log/asterisk", "/var/lib/asterisk", "/var/spool/asterisk", "/var/cache/asterisk",
        ))

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.agi_port}"

    @property
    def sip(self) -> str:
        return f"sip:{self.host}:5060"


NODES = (Node("ast1", "127.0.0.1", 4573, 9512), Node("ast2", "127.0.0.3", 4574, 9522))


def patch_once(text: str, old: str, new: str, where: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (LabError if not exactly one)."""
    count = text.count(old)
    if count != 1:
        raise LabError(f"{where}: expected {old.strip()!r} once, found it {count} times (asterisk_conf/ changed?)")
    return text.replace(old, new)


def _directories(text: str, node: Node) -> str:
    # asterisk_conf/asterisk.conf lists the compiled-in defaults as a template (!)
    text = patch_once(text, "[directories](!)\n", "[directories]\n", "asterisk.conf")
    for key, base in (("astcachedir", "/var/cache/asterisk"), ("astetcdir", "/etc/asterisk"),
                      ("astvarlibdir", "/var/lib/asterisk"), ("astdbdir", "/var/lib/asterisk"),
                      ("astkeydir", "/var/lib/asterisk"), ("astspooldir", "/var/spool/asterisk"),
                      ("astrundir", "/var/run/asterisk"), ("astlogdir", "/var/log/asterisk")):
        text = patch_once(text, f"{key} => {base}\n", f"{key} => {base}{node.suffix}\n", "asterisk.conf")
    return text


def render_node(values: LabConfigValues, node: Node, backup: Node | None, conf_dir: Path) -> dict[str, str]:
    """The files of ``node`` (relative path → content) on top of asterisk_conf/ copied as is."""
    node_values = replace(
        values,
        agi_url=node.agi_url,
        agi_backup_url=backup.agi_url if backup else "",
        trunk_register=False,
        trunk_extra_match=(FRONT_DOOR[0],),
    )
    files = render_generated(node_values)
    source = {name: (conf_dir / name).read_text() for name in ("asterisk.conf", "pjsip.conf", "manager.conf")}
    # UNIQUEIDs (the gateway's call ids) are prefixed with the system name: unique across nodes
    files["asterisk.conf"] = patch_once(source["asterisk.conf"], "[options]\n",
                                        f"[options]\nsystemname = {node.name}\n", "asterisk.conf")
    if node.suffix:
        files["asterisk.conf"] = _directories(files["asterisk.conf"], node)
        files["pjsip.conf"] = patch_once(source["pjsip.conf"], "bind = 127.0.0.1:5060\n",
                                         f"bind = {node.host}:5060\n", "pjsip.conf")
        files["manager.conf"] = patch_once(source["manager.conf"], "bindaddr = 127.0.0.1\n",
                                           f"bindaddr = {node.host}\n", "manager.conf")
    return files


def render_carrier_for_nodes(values: LabConfigValues, carrier_conf_dir: Path, nodes=NODES) -> dict[str, str]:
    """The lab carrier's pjsip.conf when the hotline has several nodes: calls to the
    hotline go to the front door (a static contact, no registration), and calls the
    nodes place (callbacks, surveys) are the hotline's from any node's address."""
    from .install import render_carrier

    text = (carrier_conf_dir / "pjsip.conf").read_text()
    text = patch_once(text, "match = 127.0.0.1\n", "match = " + ",".join(n.host for n in nodes) + "\n",
                      "lab-carrier/pjsip.conf")
    text = patch_once(text, "[02112345]\ntype = aor\n",
                      f"[02112345]\ntype = aor\ncontact = sip:12345@{FRONT_DOOR[0]}:{FRONT_DOOR[1]}\n",
                      "lab-carrier/pjsip.conf")
    return {**render_carrier(values), "pjsip.conf": text}
