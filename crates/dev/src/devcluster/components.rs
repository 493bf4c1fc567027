//! Command lines of etcd, kube-apiserver and kube-controller-manager for a loopback-only dev
//! cluster, and the audit policy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::certs::Pki;

/// The service range: only an allocation range for ClusterIPs, no traffic is ever routed.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";
/// Issuer of service-account tokens (the in-cluster name of the API server).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Controllers the controller manager runs: namespace deletion, owner-reference garbage
/// collection, the `default` ServiceAccount in every namespace (which the ServiceAccount
/// admission plugin requires before a pod can be created), and the workload controllers whose
/// pods Hibernations target (Deployment, ReplicaSet, StatefulSet): claims about what they do
/// with a hibernated pod are tested against them.
pub const CONTROLLERS: &str = "serviceaccount-controller,garbage-collector-controller,\
namespace-controller,deployment-controller,replicaset-controller,statefulset-controller";

/// Audit policy: every request at `Metadata` level (who, what, verb, response code; no bodies).
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
";

/// Loopback ports of one cluster.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
}

/// Audit files when auditing is requested.
#[derive(Clone, Debug)]
pub struct Audit {
    pub policy: PathBuf,
    pub log: PathBuf,
}

fn flag(name: &str, value: impl AsRef<std::ffi::OsStr>) -> OsString {
    let mut arg = OsString::from(format!("--{name}="));
    arg.push(value);
    arg
}

/// etcd with a private data dir; fsync is off because the data is thrown away.
pub fn etcd_args(data_dir: &Path, ports: Ports) -> Vec<OsString> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        flag("name", "dev"),
        flag("data-dir", data_dir),
        flag("listen-client-urls", &client),
        flag("advertise-client-urls", &client),
        flag("listen-peer-urls", &peer),
        flag("initial-advertise-peer-urls", &peer),
        flag("initial-cluster", format!("dev={peer}")),
        flag("unsafe-no-fsync", "true"),
        flag("log-level", "warn"),
    ]
}

/// kube-apiserver on 127.0.0.1 with client-certificate authentication and RBAC.
pub fn apiserver_args(
    pki: &Pki,
    ports: Ports,
    service_account_admission: bool,
    audit: Option<&Audit>,
) -> Vec<OsString> {
    let mut args = vec![
        flag("etcd-servers", format!("http://127.0.0.1:{}", ports.etcd_client)),
        flag("bind-address", "127.0.0.1"),
        flag("advertise-address", "127.0.0.1"),
        flag("secure-port", ports.apiserver.to_string()),
        flag("tls-cert-file", &pki.serving_cert),
        flag("tls-private-key-file", &pki.serving_key),
        flag("client-ca-file", &pki.ca_cert),
        flag("authorization-mode", "RBAC"),
        flag("service-account-issuer", SERVICE_ACCOUNT_ISSUER),
        flag("service-account-key-file", &pki.service_account_pub),
        flag("service-account-signing-key-file", &pki.service_account_key),
        flag("service-cluster-ip-range", SERVICE_CLUSTER_IP_RANGE),
        flag("profiling", "false"),
        // The `kubernetes` Endpoints may not hold a loopback address; the reconciler would log
        // a validation error every few seconds. Nothing is routed to the Service anyway.
        flag("endpoint-reconciler-type", "none"),
    ];
    if !service_account_admission {
        // Without the controller manager nothing creates the `default` ServiceAccount, and the
        // plugin would reject every pod that names none.
        args.push(flag("disable-admission-plugins", "ServiceAccount"));
    }
    if let Some(audit) = audit {
        args.push(flag("audit-policy-file", &audit.policy));
        args.push(flag("audit-log-path", &audit.log));
        // Blocking: an entry is on disk before the response is sent, so tests can count requests.
        args.push(flag("audit-log-mode", "blocking"));
        // The writer rotates at 100 MB by default, and a reader that counts by offset would then
        // miss everything after (a 1,000-set bench writes more): rotate never (1 TB).
        args.push(flag("audit-log-maxsize", "1000000"));
    }
    args
}

/// kube-scheduler with its default profile, no leader election and no serving port: it binds
/// pods that name no node to a node that fits (selectors, affinity, taints).
pub fn scheduler_args(kubeconfig: &Path) -> Vec<OsString> {
    vec![
        flag("kubeconfig", kubeconfig),
        flag("authentication-skip-lookup", "true"),
        flag("authorization-always-allow-paths", "/healthz,/readyz,/livez"),
        flag("leader-elect", "false"),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", "0"),
    ]
}

/// kube-controller-manager with only the controllers in [`CONTROLLERS`]; no serving port.
/// `nodes`: also the node lifecycle controller, which a scheduling cluster needs (it lifts the
/// `not-ready` taint every new node is born with once the node reports Ready, and taints a
/// node whose heartbeat stops); without a scheduler nothing reads those taints.
pub fn controller_manager_args(kubeconfig: &Path, nodes: bool) -> Vec<OsString> {
    let controllers = if nodes {
        format!("{CONTROLLERS},node-lifecycle-controller")
    } else {
        CONTROLLERS.to_string()
    };
    let mut args = vec![
        flag("kubeconfig", kubeconfig),
        flag("controllers", controllers),
        flag("leader-elect", "false"),
        flag("use-service-account-credentials", "false"),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", "0"),
    ];
    if nodes {
        // A node whose heartbeat stops is NotReady after 20 s rather than 40 s (twice the
        // simulator's default Lease interval), so tests of node loss wait less.
        args.push(flag("node-monitor-grace-period", "20s"));
        args.push(flag("node-monitor-period", "2s"));
    }
    args
}
