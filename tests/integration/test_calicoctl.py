"""calicoctl end to end: the installed console script, run as a subprocess against a real sqlite file.

Every test gets its own datastore file (CALICO_DB in tmp_path). What calicoctl
stored is checked independently by reading that file through libcalico's
sqlite backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from libcalico.datastore import Client
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.resources.base import parse_resource

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
RUN_TIMEOUT = 60

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool1
spec:
  cidr: 10.1.0.0/16
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool2
spec:
  cidr: 10.2.0.0/16
  ipipMode: Always
"""

POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
  labels:
    team: web
spec:
  tier: default
  order: 100
  selector: app == 'web'
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 80
      - 443
  egress:
  - action: Allow
"""


def policy(name: str, namespace: str | None = None, selector: str = "all()") -> str:
    """A small NetworkPolicy document."""
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return ("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"
            f"metadata:\n  name: {name}\n{ns}spec:\n  selector: {selector}\n")


def pool(name: str, cidr: str) -> str:
    """A small IPPool document."""
    return f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Calicoctl:
    """Runs the real calicoctl script against one sqlite file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = str(tmp_path / "calico.db")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASTORE_", "ETCD_", "CALICO_"))}
        self.env.update({"DATASTORE_TYPE": "sqlite", "CALICO_DB": self.db})

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [CALICOCTL, *args], input=stdin if stdin is not None else "", capture_output=True, text=True,
            env=env if env is not None else self.env, timeout=RUN_TIMEOUT, cwd=self.tmp,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """Run and require success; return stdout."""
        res = self(*args, stdin=stdin)
        assert res.code == 0, f"calicoctl {' '.join(args)} failed ({res.code}): {res.err}"
        return res.out

    def write(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def stored(self) -> dict[str, dict[str, Any]]:
        """Every resource in the datastore file, read directly through libcalico's sqlite backend."""

        async def read() -> dict[str, dict[str, Any]]:
            async with SqliteBackend(self.db) as backend:
                listing = await backend.list(RESOURCE_ROOT)
                return {kv.key[len(RESOURCE_ROOT):]: kv.value for kv in listing.items}

        return asyncio.run(read())

    def put(self, doc: str) -> None:
        """Store a resource directly through libcalico's Client, bypassing calicoctl."""

        async def write() -> None:
            async with SqliteBackend(self.db) as backend:
                await Client(backend).create(parse_resource(yaml.safe_load(doc)))

        asyncio.run(write())


@pytest.fixture
def ctl(tmp_path: Path) -> Calicoctl:
    return Calicoctl(tmp_path)


# ---------------------------------------------------------------- apply / get / round trip


def test_apply_multi_document_then_get_tables(ctl: Calicoctl) -> None:
    res = ctl("apply", "-f", ctl.write("pools.yaml", POOLS))
    assert (res.code, res.out, res.err) == (0, "Successfully applied 2 'IPPool' resource(s)\n", "")
    assert sorted(ctl.stored()) == ["ippools/pool1", "ippools/pool2"]

    assert ctl.ok("get", "ippools") == (
        "NAME    CIDR          SELECTOR   \n"
        "pool1   10.1.0.0/16   all()      \n"
        "pool2   10.2.0.0/16   all()      \n"
        "\n"
    )
    assert ctl.ok("get", "ippool", "-o", "wide") == (
        "NAME    CIDR          NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   \n"
        "pool1   10.1.0.0/16   true    Never      Never       false      false              all()      \n"
        "pool2   10.2.0.0/16   false   Always     Never       false      false              all()      \n"
        "\n"
    )
    assert ctl.ok("get", "ippools", "pool2", "-o", "custom-columns=NAME,IPIPMODE").splitlines() == [
        "NAME    IPIPMODE   ", "pool2   Always     ", ""]
    assert ctl.ok("get", "pools", "-o", "name") == (
        "ippool.projectcalico.org/pool1\nippool.projectcalico.org/pool2\n")


def test_round_trip_fills_metadata_and_keeps_spec(ctl: Calicoctl) -> None:
    ctl.ok("apply", "-f", ctl.write("np.yaml", POLICY))
    got = yaml.safe_load(ctl.ok("get", "networkpolicy", "allow-web", "-n", "prod", "-o", "yaml"))
    sent = yaml.safe_load(POLICY)
    assert got["spec"] == sent["spec"]
    assert (got["apiVersion"], got["kind"]) == ("projectcalico.org/v3", "NetworkPolicy")
    meta = got["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("allow-web", "prod", {"team": "web"})
    assert meta["resourceVersion"] and meta["uid"] and meta["creationTimestamp"].endswith("Z")

    as_json = json.loads(ctl.ok("get", "policy", "allow-web", "-n", "prod", "-o", "json"))
    assert as_json == got

    # The printed YAML goes straight back in; applying it again keeps uid and creationTimestamp.
    again = ctl("apply", "-f", ctl.write("back.yaml", yaml.safe_dump(got)))
    assert again.code == 0, again.err
    after = yaml.safe_load(ctl.ok("get", "np", "allow-web", "-n", "prod", "-o", "yaml"))
    assert after["spec"] == sent["spec"]
    assert after["metadata"]["uid"] == meta["uid"]
    assert after["metadata"]["creationTimestamp"] == meta["creationTimestamp"]
    assert int(after["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])


def test_get_yaml_lists(ctl: Calicoctl) -> None:
    ctl.ok("apply", "-f", ctl.write("pools.yaml", POOLS))
    listing = yaml.safe_load(ctl.ok("get", "ippools", "-o", "yaml"))
    assert listing["kind"] == "IPPoolList"
    assert listing["apiVersion"] == "projectcalico.org/v3"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["pool1", "pool2"]
    assert int(listing["metadata"]["resourceVersion"]) >= 2

    several = yaml.safe_load(ctl.ok("get", "ippool", "pool2", "pool1", "-o", "yaml"))
    assert several["kind"] == "List"
    assert [i["metadata"]["name"] for i in several["items"]] == ["pool2", "pool1"]

    empty = yaml.safe_load(ctl.ok("get", "globalnetworkpolicies", "-o", "yaml"))
    assert (empty["kind"], empty["items"]) == ("GlobalNetworkPolicyList", [])

    # A list printed by get loads back: delete everything, then apply the IPPoolList.
    printed = ctl.ok("get", "ippools", "-o", "yaml")
    ctl.ok("delete", "ippool", "pool1", "pool2")
    assert ctl.stored() == {}
    res = ctl("apply", "-f", "-", stdin=printed)
    assert res.code == 0 and res.out == "Successfully applied 2 'IPPool' resource(s)\n", res.err


def test_namespaces_and_aliases(ctl: Calicoctl) -> None:
    docs = policy("p1") + "---\n" + policy("p2", "prod") + "---\n" + policy("p3")
    ctl.ok("apply", "-f", ctl.write("p.yaml", docs))
    assert sorted(ctl.stored()) == ["networkpolicies/default/p1", "networkpolicies/default/p3",
                                    "networkpolicies/prod/p2"]
    assert ctl.ok("get", "policies") == "NAME   TIER      \np1     default   \np3     default   \n\n"
    assert ctl.ok("get", "NetworkPolicy", "-n", "prod") == "NAMESPACE   NAME   TIER      \nprod        p2     default   \n\n"
    all_ns = ctl.ok("get", "np", "-A").splitlines()
    assert all_ns[0].split() == ["NAMESPACE", "NAME", "TIER"]
    assert [line.split()[:2] for line in all_ns[1:4]] == [["default", "p1"], ["default", "p3"], ["prod", "p2"]]
    assert ctl.ok("get", "pols", "-a", "-o", "name").count("\n") == 3  # -a is Calico's old spelling of -A
    # -n places a manifest's namespace-less documents.
    ctl.ok("apply", "-f", ctl.write("q.yaml", policy("q1")), "-n", "staging")
    assert "networkpolicies/staging/q1" in ctl.stored()

    res = ctl("get", "ippool", "-n", "prod")
    assert (res.code, res.err) == (1, "IPPool is not namespaced\n")
    res = ctl("get", "np", "-A", "-n", "prod")
    assert (res.code, res.err) == (1, "cannot use both --namespace and --all-namespaces flags at the same time\n")
    res = ctl("get", "frobs")
    assert (res.code, res.err) == (1, "Failed to get resources: resource type 'frobs' is not supported\n")


# ---------------------------------------------------------------- create / replace / delete wording


def test_create_existing_and_skip_exists(ctl: Calicoctl) -> None:
    path = ctl.write("pools.yaml", POOLS)
    assert ctl.ok("create", "-f", path) == "Successfully created 2 'IPPool' resource(s)\n"
    one = ctl.write("one.yaml", pool("pool1", "10.9.0.0/16"))
    res = ctl("create", "-f", one)
    assert res.code == 1
    assert res.err == "Failed to create 'IPPool' resource: [resource already exists: IPPool(pool1)]\n"
    assert ctl.stored()["ippools/pool1"]["spec"]["cidr"] == "10.1.0.0/16"

    res = ctl("create", "-f", path)
    assert res.err == ("Failed to create any 'IPPool' resources: [resource already exists: IPPool(pool1) "
                       "resource already exists: IPPool(pool2)]\n")

    three = ctl.write("three.yaml", pool("pool1", "10.1.0.0/16") + "---\n" + pool("pool3", "10.3.0.0/16")
                      + "---\n" + pool("pool4", "10.4.0.0/16"))
    res = ctl("create", "-f", three)
    assert res.code == 1
    assert res.out == "Partial success: created the first 2 out of 3 'IPPool' resources:\n"
    assert res.err == "Hit error: [resource already exists: IPPool(pool1)]\n"
    assert sorted(ctl.stored()) == ["ippools/pool1", "ippools/pool2", "ippools/pool3", "ippools/pool4"]
    ctl.ok("delete", "ippool", "pool3", "pool4")
    assert ctl.ok("create", "-f", three, "--skip-exists") == "Successfully created 3 'IPPool' resource(s)\n"
    assert sorted(ctl.stored()) == ["ippools/pool1", "ippools/pool2", "ippools/pool3", "ippools/pool4"]


def test_replace(ctl: Calicoctl) -> None:
    res = ctl("replace", "-f", ctl.write("one.yaml", pool("pool1", "10.1.0.0/16")))
    assert (res.code, res.err) == (1, "Failed to replace 'IPPool' resource: resource does not exist: IPPool(pool1)\n")
    assert ctl.stored() == {}
    ctl.ok("apply", "-f", ctl.write("pools.yaml", POOLS))
    stale = yaml.safe_load(ctl.ok("get", "ippool", "pool1", "-o", "yaml"))
    changed = ctl.write("changed.yaml", pool("pool1", "10.1.0.0/16").replace("cidr:", "natOutgoing: false\n  cidr:"))
    assert ctl.ok("replace", "-f", changed) == "Successfully replaced 1 'IPPool' resource(s)\n"
    assert ctl.stored()["ippools/pool1"]["spec"]["natOutgoing"] is False

    # A manifest carrying an old resourceVersion is refused, by replace and by apply.
    stale["spec"]["natOutgoing"] = True
    stale_path = ctl.write("stale.yaml", yaml.safe_dump(stale))
    for command in ("replace", "apply"):
        res = ctl(command, "-f", stale_path)
        assert res.code == 1 and "update conflict: IPPool(pool1)" in res.err, res.err
    assert ctl.stored()["ippools/pool1"]["spec"]["natOutgoing"] is False

    mixed = ctl.write("mixed.yaml", pool("pool2", "10.2.0.0/16") + "---\n" + pool("nope", "10.5.0.0/16"))
    res = ctl("replace", "-f", mixed)
    assert res.code == 1
    assert res.out == "Partial success: replaced the first 1 out of 2 'IPPool' resources:\n"
    assert res.err == "Hit error: resource does not exist: IPPool(nope)\n"


def test_get_and_delete_missing(ctl: Calicoctl) -> None:
    res = ctl("get", "networkpolicy", "foo")
    assert (res.code, res.out, res.err) == (1, "", "resource does not exist: NetworkPolicy(default/foo)\n")
    ctl.ok("apply", "-f", ctl.write("p.yaml", policy("bar")))
    res = ctl("get", "np", "bar", "foo", "-o", "yaml")
    assert res.code == 1 and yaml.safe_load(res.out)["metadata"]["name"] == "bar"
    assert res.err == "resource does not exist: NetworkPolicy(default/foo)\n"

    res = ctl("delete", "networkpolicy", "foo")
    assert (res.code, res.err) == (
        1, "Failed to delete 'NetworkPolicy' resource: resource does not exist: NetworkPolicy(default/foo)\n")
    res = ctl("delete", "np", "bar", "foo")
    assert res.code == 1
    assert res.out == "Successfully deleted 1 'NetworkPolicy' resource(s)\n"
    assert res.err == "Failed to delete 'NetworkPolicy' resource: resource does not exist: NetworkPolicy(default/foo)\n"
    assert ctl.stored() == {}
    assert ctl.ok("delete", "np", "foo", "--skip-not-exists") == "Successfully deleted 1 'NetworkPolicy' resource(s)\n"


def test_delete_by_file_and_readonly_kind(ctl: Calicoctl) -> None:
    path = ctl.write("pools.yaml", POOLS)
    ctl.ok("apply", "-f", path)
    assert ctl.ok("delete", "-f", path) == "Successfully deleted 2 'IPPool' resource(s)\n"
    assert ctl.stored() == {}
    info = ("apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata:\n  name: default\n"
            "spec:\n  calicoVersion: v3.27.0\n")
    res = ctl("apply", "-f", ctl.write("mixed.yaml", POOLS + "---\n" + info))
    assert res.code == 1
    assert res.out == "Partial success: applied the first 2 out of 3 resources:\n"
    assert res.err == ("Hit error(s): [operation apply is not supported on ClusterInformation: "
                       "resource is readonly]\n")
    assert sorted(ctl.stored()) == ["ippools/pool1", "ippools/pool2"]


# ---------------------------------------------------------------- bad input writes nothing


BAD = POOLS + """---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool3
spec:
  cidr: 10.3.0.0/33
  ipipMode: Sometimes
---
apiVersion: projectcalico.org/v3
kind: Frob
metadata:
  name: x
"""


@pytest.mark.parametrize("command", ["apply", "create", "replace", "delete"])
def test_any_invalid_document_writes_nothing(ctl: Calicoctl, command: str) -> None:
    path = ctl.write("bad.yaml", BAD)
    res = ctl(command, "-f", path)
    assert res.code == 1
    assert res.out == ""
    lines = res.err.splitlines()
    assert lines[0].startswith(f"Failed to execute command: {path} document 3: spec.")
    assert any(f"{path} document 3: spec.cidr: " in line for line in lines), res.err
    assert any(f"{path} document 3: spec.ipipMode: " in line for line in lines), res.err
    assert any(line == f"{path} document 4: kind: unknown resource kind 'Frob'" for line in lines), res.err
    assert not any("document 1" in line or "document 2" in line for line in lines)
    assert ctl.stored() == {}


def test_bad_files_and_directories(ctl: Calicoctl) -> None:
    res = ctl("apply", "-f", ctl.write("broken.yaml", "kind: [\n"))
    assert res.code == 1 and res.err.startswith("Failed to execute command: ")
    assert "broken.yaml: invalid YAML at line 2" in res.err
    res = ctl("apply", "-f", ctl.write("typo.yaml", pool("p", "10.0.0.0/8").replace("spec:", "spec:\n  cidrr: x")))
    assert res.err == f"Failed to execute command: {ctl.tmp}/typo.yaml document 1: spec.cidrr: unknown field\n"
    res = ctl("apply", "-f", ctl.write("empty.yaml", "# nothing\n"))
    assert (res.code, res.err) == (1, f"No resources specified in file {ctl.tmp}/empty.yaml\n")
    res = ctl("apply", "-f", str(ctl.tmp / "missing.yaml"))
    assert res.err == f"Failed to execute command: open {ctl.tmp}/missing.yaml: no such file or directory\n"
    # A directory with one bad file writes none of its files.
    ctl.write("dir/a.yaml", POOLS)
    ctl.write("dir/b.yaml", pool("pool9", "not-a-cidr"))
    res = ctl("apply", "-f", str(ctl.tmp / "dir"))
    assert res.code == 1 and f"{ctl.tmp}/dir/b.yaml document 1: spec.cidr" in res.err, res.err
    # A namespace clash is caught before anything is written as well.
    res = ctl("apply", "-f", ctl.write("ns.yaml", policy("a") + "---\n" + policy("b", "prod")), "-n", "dev")
    assert res.code == 1
    assert res.err.endswith("ns.yaml document 2: resource namespace does not match client namespace. prod != dev\n")
    assert ctl.stored() == {}


def test_directory_stdin_json_and_list_inputs(ctl: Calicoctl) -> None:
    ctl.write("in/b.yml", pool("pool-b", "10.12.0.0/16"))
    ctl.write("in/a.json", json.dumps(yaml.safe_load(pool("pool-a", "10.11.0.0/16"))))
    ctl.write("in/c.yaml", yaml.safe_dump({"apiVersion": "projectcalico.org/v3", "kind": "List", "items": [
        yaml.safe_load(pool("pool-c", "10.13.0.0/16")), yaml.safe_load(policy("pol-c"))]}))
    ctl.write("in/notes.txt", "not a manifest")
    ctl.write("in/sub/d.yaml", pool("pool-d", "10.14.0.0/16"))
    assert ctl.ok("apply", "-f", str(ctl.tmp / "in")) == "Successfully applied 4 resource(s)\n"
    assert sorted(ctl.stored()) == ["ippools/pool-a", "ippools/pool-b", "ippools/pool-c",
                                    "networkpolicies/default/pol-c"]
    assert ctl.ok("apply", "-R", "-f", str(ctl.tmp / "in")) == "Successfully applied 5 resource(s)\n"
    assert "ippools/pool-d" in ctl.stored()

    arr = json.dumps([yaml.safe_load(pool("pool-e", "10.15.0.0/16")), yaml.safe_load(pool("pool-f", "10.16.0.0/16"))])
    assert ctl.ok("create", "-f", "-", stdin=arr) == "Successfully created 2 'IPPool' resource(s)\n"
    got = yaml.safe_load(ctl.ok("get", "-f", "-", "-o", "yaml", stdin=arr))
    assert [i["spec"]["cidr"] for i in got["items"]] == ["10.15.0.0/16", "10.16.0.0/16"]
    res = ctl("apply", "-f", "-", stdin=pool("pool-g", "bad"))
    assert res.code == 1 and res.err.startswith("Failed to execute command: stdin document 1: spec.cidr")


# ---------------------------------------------------------------- patch / label / validate / version


def test_patch(ctl: Calicoctl) -> None:
    ctl.ok("apply", "-f", ctl.write("pools.yaml", POOLS))
    before = ctl.stored()["ippools/pool1"]
    out = ctl.ok("patch", "ippool", "pool1", "-p", '{"spec": {"natOutgoing": false, "vxlanMode": "Always"}}')
    assert out == "Successfully patched 1 'IPPool' resource\n"
    after = ctl.stored()["ippools/pool1"]
    assert (after["spec"]["natOutgoing"], after["spec"]["vxlanMode"]) == (False, "Always")
    assert after["spec"]["cidr"] == before["spec"]["cidr"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]

    res = ctl("patch", "ippool", "pool1", "--patch", '{"spec": {"ipipMode": "Sometimes"}}')
    assert res.code == 1 and res.err.startswith("Hit error: creating resource from patched data: spec.ipipMode")
    assert ctl.stored()["ippools/pool1"] == after
    res = ctl("patch", "ippool", "nope", "-p", '{"spec": {}}')
    assert (res.code, res.err) == (1, "Hit error: resource does not exist: IPPool(nope)\n")
    res = ctl("patch", "ippool", "pool1", "-p", "{not json")
    assert res.code == 1 and res.err.startswith("Hit error: performing merge patch: invalid JSON")
    ctl.ok("apply", "-f", ctl.write("p.yaml", policy("pp", "prod")))
    ctl.ok("patch", "policy", "pp", "-n", "prod", "-p", '{"metadata": {"labels": {"a": "b"}}, "spec": {"order": 5}}')
    stored = ctl.stored()["networkpolicies/prod/pp"]
    assert (stored["metadata"]["labels"], stored["spec"]["order"]) == ({"a": "b"}, 5)


def test_label(ctl: Calicoctl) -> None:
    ctl.ok("apply", "-f", ctl.write("pools.yaml", POOLS))

    def labels() -> dict[str, str]:
        return ctl.stored()["ippools/pool1"]["metadata"].get("labels", {})

    assert ctl.ok("label", "ippool", "pool1", "env=prod") == "Successfully set label env on ippool pool1\n"
    assert labels() == {"env": "prod"}
    res = ctl("label", "ippool", "pool1", "env=dev")
    assert res.code == 1 and res.err == ("failed to update label of ippool pool1, key env is already present. "
                                         "please use '--overwrite' to set a new value.\n")
    assert ctl.ok("label", "pools", "pool1", "env=dev", "--overwrite") == (
        "Successfully updated label env on pools pool1\n")
    assert labels() == {"env": "dev"}
    assert ctl.ok("label", "ippool", "pool1", "env", "--remove") == "Successfully removed label env from ippool pool1\n"
    assert labels() == {}
    res = ctl("label", "ippool", "pool1", "env", "--remove")
    assert res.err == "cannot remove label of ippool pool1, key env does not exist\n"
    assert ctl("label", "ippool", "pool1", "a=b=c").err == "invalid label a=b=c\n"
    assert ctl("label", "ippool", "nope", "a=b").err == "ippool nope not found\n"
    res = ctl("label", "ippool", "pool1", "bad key!=x")
    assert res.code == 1 and res.err.startswith("failed to update ippool pool1, label not changed: ")
    assert labels() == {}
    res = ctl("label", "ippool", "pool1", "a=b", "--overwrite", "--remove")
    assert res.code == 1 and res.err.startswith("Invalid option: 'calicoctl label ")


def test_validate_is_offline(ctl: Calicoctl) -> None:
    offline = dict(ctl.env, DATASTORE_TYPE="etcdv3", ETCD_ENDPOINTS="http://127.0.0.1:1")
    good = ctl.write("pools.yaml", POOLS)
    res = ctl("validate", "-f", good, env=offline)
    assert (res.code, res.out) == (0, "Successfully validated 2 'IPPool' resource(s)\n")
    res = ctl("validate", "-f", ctl.write("bad.yaml", BAD), env=offline)
    assert res.code == 1 and res.err.startswith(f"failed to execute command: {ctl.tmp}/bad.yaml document 3: ")
    assert not Path(ctl.db).exists()


def test_version(ctl: Calicoctl) -> None:
    res = ctl("version")
    assert res.code == 1
    assert res.out.startswith("Client Version:    v")
    assert res.err.startswith("Unable to retrieve Cluster Version or Type: resource does not exist: "
                              "ClusterInformation(default)")
    ctl.put("apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata:\n  name: default\n"
            "spec:\n  calicoVersion: v3.27.0\n  clusterType: k8s,bgp\n  datastoreReady: true\n")
    lines = ctl.ok("version").splitlines()
    assert lines[0].startswith("Client Version:    v") and lines[1].startswith("Git commit:")
    assert lines[2:] == ["Cluster Version:   v3.27.0", "Cluster Type:      k8s,bgp"]
    assert ctl.ok("get", "clusterinfo", "-o", "wide").splitlines()[1].split() == ["default", "k8s,bgp", "v3.27.0", "true"]


def test_config_file(ctl: Calicoctl) -> None:
    other = str(ctl.tmp / "other.db")
    cfg = ctl.write("calicoctl.cfg", "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
                                     f"spec:\n  datastoreType: sqlite\n  calicoDB: {other}\n")
    assert ctl.ok("apply", "-c", cfg, "-f", ctl.write("pools.yaml", POOLS)).startswith("Successfully applied 2")
    assert ctl.stored() == {}
    assert ctl.ok("get", "ippools", "--config", cfg, "-o", "name").count("\n") == 2
    res = ctl("get", "ippools", "-c", str(ctl.tmp / "absent.cfg"))
    assert (res.code, res.err) == (1, f"Failed to create Calico API client: config file {ctl.tmp}/absent.cfg "
                                      "does not exist\n")
    bad = ctl.write("bad.cfg", "kind: CalicoAPIConfig\nspec:\n  datastoreTyp: sqlite\n")
    assert ctl("get", "ippools", "-c", bad).err == f"Failed to create Calico API client: config file {bad}: " \
                                                  "spec.datastoreTyp: unknown field\n"
    res = ctl("get", "ippools", env=dict(ctl.env, DATASTORE_TYPE="nosuch"))
    assert res.code == 1 and res.err.startswith("Failed to create Calico API client: DATASTORE_TYPE: ")


def test_usage_errors_and_help(ctl: Calicoctl) -> None:
    res = ctl("get", "--bogus", "ippools")
    assert (res.code, res.err) == (
        1, "Invalid option: 'calicoctl get --bogus ippools'. Use flag '--help' to read about a specific subcommand.\n")
    assert ctl("get").code == 1
    assert ctl("apply").code == 1
    assert ctl("get", "ippools", "-f", "x.yaml").code == 1
    res = ctl("frobnicate")
    assert res.code == 1 and res.err.startswith('unknown command: "frobnicate"')
    assert ctl("get", "ippools", "-o", "xml").err == "unrecognized output format 'xml'\n"
    assert "calicoctl get ( (<KIND> [<NAME>...])" in ctl.ok("get", "--help")
    assert "Usage:" in ctl.ok("--help")
    res = ctl("delete", "ippool", "")
    assert (res.code, res.err) == (1, "resource name may not be empty\n")


NODES = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
spec:
  bgp:
    ipv4Address: 10.0.0.1/24
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node2
spec:
  bgp:
    ipv4Address: 10.0.0.2/24
    asNumber: 65001
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer1
spec:
  peerIP: 10.0.0.9
  asNumber: 64999
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: hep1
spec:
  node: node1
  interfaceName: eth0
  expectedIPs: [10.0.0.1, 10.0.0.5]
"""


def test_tables_of_other_kinds_and_export(ctl: Calicoctl) -> None:
    path = ctl.write("nodes.yaml", NODES)
    assert ctl.ok("apply", "-f", path) == "Successfully applied 4 resource(s)\n"
    # A node without its own AS number shows the cluster default in parentheses (64512 when unset).
    assert ctl.ok("get", "nodes", "-o", "wide") == (
        "NAME    ASN       IPV4          IPV6   \n"
        "node1   (64512)   10.0.0.1/24          \n"
        "node2   65001     10.0.0.2/24          \n\n")
    ctl.ok("apply", "-f", ctl.write("bgp.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n"
                                                "metadata:\n  name: default\nspec:\n  asNumber: 63400\n"))
    assert ctl.ok("get", "nodes", "-o", "wide").splitlines()[1].split() == ["node1", "(63400)", "10.0.0.1/24"]
    assert ctl.ok("get", "bgpconfig").splitlines()[1].split() == ["default", "-", "63400"]
    assert ctl.ok("get", "bgppeers").splitlines()[1].split() == ["peer1", "10.0.0.9", "(global)", "64999"]
    assert ctl.ok("get", "heps", "-o", "wide").splitlines()[1].split() == ["hep1", "node1", "eth0",
                                                                         "10.0.0.1,10.0.0.5"]
    # get -f prints one table per kind, each followed by an empty line.
    blocks = ctl.ok("get", "-f", path).split("\n\n")
    assert [b.splitlines()[0].split() for b in blocks if b] == [
        ["NAME"], ["NAME", "PEERIP", "NODE", "ASN"], ["NAME", "NODE"]]
    exported = yaml.safe_load(ctl.ok("get", "node", "node1", "-o", "yaml", "--export"))
    assert exported["metadata"] == {"name": "node1"}
