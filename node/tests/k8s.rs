//! The Kubernetes manifests of deploy/k8s/, read as `kubectl apply -k`
//! would take them (the files `kustomization.yaml` lists, in the namespace
//! it sets), checked for what a schema cannot see: every container is
//! probed on `/readyz` and `/healthz`, runs non-root on a read-only root
//! with no capabilities and bounded memory; no Secret is committed and no
//! secret value is in a ConfigMap; the configuration in each ConfigMap
//! parses with the node's own parser, its peers are the StatefulSets' pod
//! names under their headless Services, and every path and port it names
//! is one the pod mounts or exposes. Schemas: `scripts/check-k8s`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proto::Config;
use serde::Deserialize;
use serde_json::Value;

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// Every object of every file the kustomization lists, and its namespace.
fn objects() -> (String, Vec<Value>) {
    let dir = k8s_dir();
    let kustomization = yaml_documents(&dir.join("kustomization.yaml"));
    let kustomization = &kustomization[0];
    let namespace = kustomization["namespace"].as_str().unwrap().to_owned();
    let mut objects = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        objects.extend(yaml_documents(&dir.join(file.as_str().unwrap())));
    }
    (namespace, objects)
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .filter(|document| !document.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str, wanted: &str) -> &'a Value {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| name(o) == wanted)
        .unwrap_or_else(|| panic!("no {kind} `{wanted}`"))
}

/// Whether `selector` (a label map) selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
}

/// The container port named `port` (a name or a number), as a number.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == *port)
        .unwrap_or_else(|| panic!("no container port {port}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// Where each volume of the pod is mounted in `container`, by volume name.
fn mounts(container: &Value) -> BTreeMap<String, String> {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The directories mounted from a volume of the kind `source` (`secret`,
/// `configMap`), with the object each comes from.
fn mounted_from(pod: &Value, container: &Value, source: &str) -> Vec<(String, String)> {
    let mounts = mounts(container);
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.get(source).is_some())
        .filter_map(|v| {
            let at = mounts.get(v["name"].as_str().unwrap())?;
            let object = match source {
                "secret" => &v[source]["secretName"],
                _ => &v[source]["name"],
            };
            Some((at.clone(), object.as_str().unwrap().to_owned()))
        })
        .collect()
}

fn under(path: &Path, dir: &str) -> bool {
    path.starts_with(dir) && path != Path::new(dir)
}

#[test]
fn every_listed_file_parses_and_nothing_is_committed_as_a_secret() {
    let (_, objects) = objects();
    assert!(!objects.is_empty());
    for object in &objects {
        assert!(object["apiVersion"].is_string(), "{object}");
        assert!(object["metadata"]["name"].is_string(), "{object}");
    }
    assert!(
        of_kind(&objects, "Secret").is_empty(),
        "Secrets are made with kubectl from files kept off the repository"
    );
    // Nothing that looks like key material or a provider key anywhere.
    for entry in std::fs::read_dir(k8s_dir()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for marker in [
            "PRIVATE KEY",
            "BEGIN CERTIFICATE",
            "sk-",
            "api_key =",
            "token =",
        ] {
            assert!(!text.contains(marker), "`{marker}` in deploy/k8s");
        }
    }
}

#[test]
fn every_container_is_probed_confined_and_bounded() {
    let (_, objects) = objects();
    let sets = of_kind(&objects, "StatefulSet");
    assert!(sets.len() >= 2, "one StatefulSet per region, two shown");
    for set in sets {
        let who = name(set);
        assert_eq!(set["spec"]["replicas"], 1, "{who}: one node per region");
        assert_eq!(
            set["spec"]["updateStrategy"]["type"], "OnDelete",
            "{who}: an apply must not restart every region at once"
        );
        let pod = &set["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{who}");
        assert_ne!(pod["securityContext"]["runAsUser"], 0, "{who}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{who}");
        let containers = pod["containers"].as_array().unwrap();
        assert!(!containers.is_empty());
        for container in containers {
            let probe = |kind: &str| &container[kind]["httpGet"];
            assert_eq!(probe("readinessProbe")["path"], "/readyz", "{who}");
            assert_eq!(probe("livenessProbe")["path"], "/healthz", "{who}");
            for kind in ["readinessProbe", "livenessProbe"] {
                assert_eq!(
                    container_port(container, &probe(kind)["port"]),
                    9080,
                    "{who}: {kind} on the admin listener"
                );
            }
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{who}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{who}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{who}"
            );
            assert!(security["capabilities"]["add"].is_null(), "{who}");
            let resources = &container["resources"];
            assert!(resources["requests"]["cpu"].is_string(), "{who}");
            assert!(resources["requests"]["memory"].is_string(), "{who}");
            assert!(resources["limits"]["memory"].is_string(), "{who}");
            // Secrets reach the process from Secrets only, never as values.
            for env in container["env"].as_array().unwrap() {
                let var = env["name"].as_str().unwrap();
                if var.contains("TOKEN") || var.contains("KEY") {
                    assert!(env["value"].is_null(), "{who}: {var} is a literal");
                    assert!(env["valueFrom"]["secretKeyRef"].is_object(), "{who}: {var}");
                }
            }
        }
    }
}

#[test]
fn services_and_the_disruption_budget_select_the_nodes() {
    let (_, objects) = objects();
    let sets = of_kind(&objects, "StatefulSet");
    let budgets = of_kind(&objects, "PodDisruptionBudget");
    assert!(!budgets.is_empty());
    for set in &sets {
        let who = name(set);
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        assert!(
            selects(&set["spec"]["selector"]["matchLabels"], labels),
            "{who}"
        );
        let covering: Vec<_> = budgets
            .iter()
            .filter(|b| selects(&b["spec"]["selector"]["matchLabels"], labels))
            .collect();
        assert_eq!(covering.len(), 1, "{who}: one PodDisruptionBudget");
        assert_eq!(covering[0]["spec"]["maxUnavailable"], 1, "{who}");

        let headless = find(
            &objects,
            "Service",
            set["spec"]["serviceName"].as_str().unwrap(),
        );
        assert_eq!(headless["spec"]["clusterIP"], "None", "{who}: headless");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "{who}");
        let selected: Vec<_> = of_kind(&objects, "Service")
            .into_iter()
            .filter(|s| selects(&s["spec"]["selector"], labels))
            .collect();
        let container = &set["spec"]["template"]["spec"]["containers"][0];
        let mut exposed = BTreeSet::new();
        for service in &selected {
            for port in service["spec"]["ports"].as_array().unwrap() {
                let target = container_port(container, &port["targetPort"]);
                let named = container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["containerPort"] == target)
                    .unwrap();
                assert_eq!(
                    named["protocol"],
                    port["protocol"],
                    "{who}: {} port {target}",
                    name(service)
                );
                exposed.insert(target);
            }
        }
        // Raft (UDP), the data plane and the admin plane.
        assert_eq!(exposed, BTreeSet::from([7080, 8080, 9080]), "{who}");
    }
}

#[test]
fn each_config_parses_and_names_its_peers_mounts_and_ports() {
    let (namespace, objects) = objects();
    let sets = of_kind(&objects, "StatefulSet");
    // Where each node is dialled: its pod's name under the headless Service.
    let dialled: BTreeMap<String, &str> = sets
        .iter()
        .map(|set| {
            let host = format!(
                "{}-0.{}.{namespace}.svc.cluster.local",
                name(set),
                set["spec"]["serviceName"].as_str().unwrap()
            );
            (host, name(set))
        })
        .collect();
    let mut ids = BTreeSet::new();
    let mut member_lists = BTreeSet::new();
    for set in &sets {
        let who = name(set);
        let pod = &set["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let at = args.iter().position(|a| *a == "--config").unwrap();
        let file = Path::new(args[at + 1]);

        // The file comes from a ConfigMap mounted at its directory.
        let configs = mounted_from(pod, container, "configMap");
        let (dir, map) = configs
            .iter()
            .find(|(dir, _)| file.parent() == Some(Path::new(dir)))
            .unwrap_or_else(|| panic!("{who}: {file:?} is not in a mounted ConfigMap"));
        let key = file.strip_prefix(dir).unwrap().to_str().unwrap();
        let text = find(&objects, "ConfigMap", map)["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: ConfigMap {map} has no {key}"));
        let config = Config::from_toml(text).unwrap_or_else(|e| panic!("{who}: {e}"));

        assert!(ids.insert(config.node.id), "{who}: node id twice");
        assert_eq!(
            set["spec"]["template"]["metadata"]["labels"]["meridian.example/region"],
            config.node.region.as_str(),
            "{who}"
        );

        // Peers by name: every member is a StatefulSet's pod, this node is
        // its own, and all nodes list the same members.
        let voters = config.cluster.voters().unwrap();
        for voter in &voters {
            let host = voter.raft_addr.host();
            assert!(
                voter.raft_addr.socket_addr().is_none(),
                "{who}: {host} is an IP"
            );
            assert!(
                dialled.contains_key(&host),
                "{who}: {host} is no pod of this deployment"
            );
            assert_eq!(voter.raft_addr.port(), 7080, "{who}");
            if voter.id == config.node.id {
                assert_eq!(dialled[&host], who, "{who}: its own member entry");
            }
        }
        assert_eq!(voters.len(), sets.len(), "{who}: every region a voter");
        member_lists.insert(config.cluster.members.clone());

        // Listeners on every interface, on the ports the container names.
        for (listener, port) in [
            (config.listen.api, "api"),
            (config.listen.admin, "admin"),
            (config.listen.raft, "raft"),
        ] {
            assert!(listener.ip().is_unspecified(), "{who}: {listener}");
            assert_eq!(
                u64::from(listener.port()),
                container_port(container, &Value::from(port)),
                "{who}: {port}"
            );
        }

        // Secrets: TLS and provider keys are files of mounted Secrets; the
        // admin token and client keys variables come from Secrets.
        let secret_dirs = mounted_from(pod, container, "secret");
        let in_secret = |path: &Path| secret_dirs.iter().any(|(dir, _)| under(path, dir));
        let tls = config
            .tls
            .as_ref()
            .unwrap_or_else(|| panic!("{who}: no [tls]"));
        for path in [&tls.ca, &tls.cert, &tls.key] {
            assert!(in_secret(path), "{who}: {path:?} is not in a Secret");
        }
        for upstream in &config.upstreams {
            if let Some(path) = &upstream.api_key_file {
                assert!(in_secret(path), "{who}: {path:?} is not in a Secret");
            }
            assert!(upstream.api_key_env.is_none(), "{who}: keys as files");
        }
        let from_secret: BTreeSet<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["valueFrom"]["secretKeyRef"].is_object())
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        // The variable `meridian` subcommands read too (an operator's shell).
        assert_eq!(config.admin.token_env, "MERIDIAN_ADMIN_TOKEN", "{who}");
        assert!(
            from_secret.contains(config.admin.token_env.as_str()),
            "{who}"
        );
        for key in &config.keys {
            assert!(
                from_secret.contains(key.key_env.as_str()),
                "{who}: {}",
                key.name
            );
        }
        // Every variable set is one the node reads: a misspelt name would be
        // set for nothing while the node misses the one it needs.
        let mut read: BTreeSet<&str> = BTreeSet::from(["MERIDIAN_LOG_FORMAT"]);
        read.insert(&config.admin.token_env);
        read.extend(config.keys.iter().map(|k| k.key_env.as_str()));
        for env in container["env"].as_array().unwrap() {
            let var = env["name"].as_str().unwrap();
            assert!(read.contains(var), "{who}: {var} is read by nothing");
        }

        // State on the claim, mounted where the config keeps it.
        let claims: Vec<&str> = set["spec"]["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap())
            .collect();
        let mounts = mounts(container);
        assert!(
            claims
                .iter()
                .any(|c| mounts.get(*c).map(PathBuf::from) == Some(config.node.data_dir.clone())),
            "{who}: data_dir {:?} is not on a volume claim",
            config.node.data_dir
        );
    }
    assert_eq!(member_lists.len(), 1, "the regions list different members");
}
