"""calicoctl's help texts, in Calico's docopt layout (``--help`` prints them)."""

from __future__ import annotations

MAIN = """Usage:
  calicoctl [options] <command> [<args>...]

    create       Create a resource by file, directory or stdin.
    replace      Replace a resource by file, directory or stdin.
    apply        Apply a resource by file, directory or stdin.  This creates a resource
                 if it does not exist, and replaces a resource if it does exists.
    patch        Patch a preexisting resource in place.
    delete       Delete a resource identified by file, directory, stdin or resource type and
                 name.
    get          Get a resource identified by file, directory, stdin or resource type and
                 name.
    label        Add or update labels of resources.
    validate     Validate a resource by file, directory or stdin without applying it.
    ipam         IP address management.
    explain      Explain why a flow between two endpoints is allowed or denied.
    version      Display the version of this binary.

Options:
  -h --help                    Show this screen.
  -l --log-level=<level>       Set the log level (one of panic, fatal, error,
                               warn, info, debug) [default: panic]
     --context=<context>       The name of the kubeconfig context to use.
     --allow-version-mismatch  Allow client and cluster versions mismatch.

Description:
  The calicoctl command line tool is used to manage Calico network and security
  policy, to view and manage endpoint configuration, and to manage a Calico
  node instance.

  See 'calicoctl <command> --help' to read about a specific subcommand.
"""

_COMMON = """  -c --config=<CONFIG>         Path to the file containing connection
                               configuration in YAML or JSON format.
                               [default: /etc/calico/calicoctl.cfg]
  -n --namespace=<NS>          Namespace of the resource.
                               Only applicable to namespaced kinds (NetworkPolicy,
                               NetworkSet, WorkloadEndpoint, ...).
                               Uses the default namespace if not specified.
     --context=<context>       The name of the kubeconfig context to use.
     --allow-version-mismatch  Allow client and cluster versions mismatch.
"""

_FILE = """  -f --filename=<FILENAME>     Filename to use.  If set to "-" loads from stdin. If
                               filename is a directory, every .json .yaml and .yml
                               file within that directory is used, in sorted order.
  -R --recursive               Process the filename specified in -f or --filename recursively.
     --skip-empty              Do not error if any files or directory specified using -f
                               or --filename contain no data.
"""


def _write(verb: str, extra_usage: str = "", extra_opts: str = "") -> str:
    return f"""Usage:
  calicoctl {verb} --filename=<FILENAME> [--recursive] [--skip-empty]{extra_usage}
                  [--config=<CONFIG>] [--namespace=<NS>] [--context=<context>] [--allow-version-mismatch]

Examples:
  calicoctl {verb} -f ./policy.yaml
  cat policy.json | calicoctl {verb} -f -

Options:
  -h --help                    Show this screen.
{_FILE}{extra_opts}{_COMMON}
Description:
  Every document in the file(s) is validated before anything is written: if any
  document is invalid, nothing is written and the error names the file, the
  document, the field and the reason.
"""


COMMANDS = {
    "apply": _write("apply"),
    "create": _write("create", " [--skip-exists]",
                     "     --skip-exists            Skip over and treat as successful any attempts to\n"
                     "                               create an entry that already exists.\n"),
    "replace": _write("replace"),
    "delete": """Usage:
  calicoctl delete ( (<KIND> [<NAME>...]) |
                   --filename=<FILE> [--recursive] [--skip-empty] )
                   [--skip-not-exists] [--config=<CONFIG>] [--namespace=<NS>] [--context=<context>]
                   [--allow-version-mismatch]

Examples:
  calicoctl delete -f ./policy.yaml
  calicoctl delete policy foo bar

Options:
  -h --help                    Show this screen.
  -s --skip-not-exists         Skip over and treat as successful, resources that
                               don't exist.
""" + _FILE + _COMMON,
    "get": """Usage:
  calicoctl get ( (<KIND> [<NAME>...]) |
                --filename=<FILENAME> [--recursive] [--skip-empty] )
                [--output=<OUTPUT>] [--config=<CONFIG>] [--namespace=<NS>] [--all-namespaces] [--export]
                [--context=<context>] [--allow-version-mismatch]

Examples:
  calicoctl get policy
  calicoctl get -o yaml policy my-policy-1 my-policy-2

Options:
  -h --help                    Show this screen.
""" + _FILE + """  -o --output=<OUTPUT FORMAT>  Output format.  One of: yaml, json, ps, wide, name,
                               custom-columns=...   [Default: ps]
  -A --all-namespaces          If present, list the requested object(s) across all namespaces.
     --export                  If present, returns the requested object(s) stripped of
                               cluster-specific information. This flag will be ignored
                               if <NAME> is not specified.
""" + _COMMON,
    "patch": """Usage:
  calicoctl patch <KIND> <NAME> --patch=<PATCH> [--type=<TYPE>] [--config=<CONFIG>] [--namespace=<NS>]
                  [--context=<context>] [--allow-version-mismatch]

Examples:
  calicoctl patch ippool pool1 --patch '{"spec":{"natOutgoing": true}}'

Options:
  -h --help                    Show this screen.
  -p --patch=<PATCH>           Spec to use to patch the resource (a JSON merge patch).
  -t --type=<TYPE>             Format of patch type: strategic (default) or merge; both
                               merge maps and replace lists.
""" + _COMMON,
    "label": """Usage:
  calicoctl label (<KIND> <NAME>
                  ( <key>=<value> [--overwrite] |
                    <key> --remove )
                  [--config=<CONFIG>] [--namespace=<NS>] [--context=<context>]) [--allow-version-mismatch]

Examples:
  calicoctl label nodes node1 cluster=frontend --overwrite
  calicoctl label nodes node1 cluster --remove

Options:
  -h --help                    Show this screen.
     --overwrite               Overwrite the value when the key is already present.
     --remove                  Remove the specified key from the labels.
""" + _COMMON,
    "validate": """Usage:
  calicoctl validate --filename=<FILENAME> [--recursive] [--skip-empty] [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
""" + _FILE + """     --allow-version-mismatch  Allow client and cluster versions mismatch.

Description:
  The validate command parses and validates the specified resources offline,
  without connecting to any datastore.
""",
    "version": """Usage:
  calicoctl version [--config=<CONFIG>] [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
  -c --config=<CONFIG>         Path to the file containing connection configuration in
                               YAML or JSON format.
                               [default: /etc/calico/calicoctl.cfg]
     --allow-version-mismatch  Allow client and cluster versions mismatch.

Description:
  Display the version of calicoctl, and of the cluster when its datastore holds
  ClusterInformation.
""",
}
