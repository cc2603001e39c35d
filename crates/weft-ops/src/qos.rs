//! Pod QoS classes, computed from manifests the way Kubernetes does.
//!
//! Only `cpu` and `memory` count, over `containers` and `initContainers`:
//!
//! * **Guaranteed**: every container has a cpu and a memory limit, and its
//!   requests equal its limits for both. A request that is absent defaults
//!   to the limit (the API server's defaulting, applied here because
//!   manifests are read before it).
//! * **BestEffort**: no container has a cpu or memory request or limit.
//! * **Burstable**: anything else.
//!
//! Zero quantities: Kubernetes (`ComputePodQOS` / `GetPodQOS` in
//! `pkg/apis/core/v1/helper/qos`) only counts quantities greater than zero,
//! both when deciding BestEffort and when looking for limits. So a pod whose
//! only settings are `cpu: 0` requests or limits is **BestEffort**, and a
//! `cpu: "0"` limit does not count as a cpu limit for Guaranteed. An explicit
//! zero request next to a positive limit is not defaulted, so it differs from
//! the limit (Burstable). This module follows those rules.
//!
//! Kubernetes compares pod-wide sums of requests and limits, where this
//! module compares per container. The two agree for every pod the API
//! server accepts (validation requires request <= limit in each container,
//! so the sums are equal only if every pair is), and per container gives a
//! reason that names the container. Pod-level `spec.resources` (the
//! PodLevelResources feature) is not considered.
//!
//! Quantities are compared numerically ([`Quantity`]): `1` == `1000m`,
//! `1Gi` == `1024Mi`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::quantity::Quantity;

/// A Kubernetes pod QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        })
    }
}

/// The class of one pod, or of the pod template of one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodQos {
    /// `metadata.namespace`, `default` when the manifest leaves it out.
    pub namespace: String,
    /// The pod's name, or the workload's name for a template.
    pub name: String,
    /// `Pod`, or the workload kind (`Deployment`, `CronJob`, ...).
    pub kind: String,
    pub class: QosClass,
    /// One line saying why.
    pub reason: String,
}

/// Everything found in a set of manifests: classified pods and notes about
/// the objects that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QosReport {
    pub pods: Vec<PodQos>,
    /// One line per skipped object, e.g. `document 2: skipped Service default/web (no pod template)`.
    pub notes: Vec<String>,
}

/// Why manifests could not be classified. Each message is one line naming
/// the document or the object and the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QosError {
    #[error("document {document}: invalid YAML/JSON: {message}")]
    Syntax { document: usize, message: String },
    #[error("{object}: {field}: invalid quantity {value}")]
    Quantity {
        /// e.g. `pod default/web`, `deployment default/web`.
        object: String,
        /// e.g. `containers[1].resources.limits.cpu`.
        field: String,
        /// The value as written, quoted when it was a string.
        value: String,
    },
    #[error("{object}: {field}: {problem}")]
    Shape {
        object: String,
        field: String,
        problem: String,
    },
}

/// Classifies every pod and pod template in `text`: YAML or JSON; a single
/// object, a `List` (or any `*List` with `items`), or several YAML documents
/// separated by `---`. Workloads (`Deployment`, `StatefulSet`, `DaemonSet`,
/// `ReplicaSet`, `ReplicationController`, `Job`, `CronJob`, `PodTemplate`)
/// are classified by their pod template. Other kinds are skipped; see
/// [`classify_manifests_report`] for the notes saying so.
pub fn classify_manifests(text: &str) -> Result<Vec<PodQos>, QosError> {
    Ok(classify_manifests_report(text)?.pods)
}

/// [`classify_manifests`], also returning a note for each skipped object.
pub fn classify_manifests_report(text: &str) -> Result<QosReport, QosError> {
    let mut report = QosReport::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = Value::deserialize(document).map_err(|e| QosError::Syntax {
            document: number,
            message: one_line(&e.to_string()),
        })?;
        if value.is_null() {
            continue; // empty document, e.g. a leading or trailing `---`
        }
        visit(&value, number, &mut report)?;
    }
    Ok(report)
}

/// A table with aligned columns `NAMESPACE NAME KIND QOS REASON`, one row per
/// pod, each line ending in `\n`.
pub fn render_table(pods: &[PodQos]) -> String {
    let header = ["NAMESPACE", "NAME", "KIND", "QOS", "REASON"];
    let rows: Vec<[String; 5]> = pods
        .iter()
        .map(|p| {
            [
                p.namespace.clone(),
                p.name.clone(),
                p.kind.clone(),
                p.class.to_string(),
                p.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn str_at<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn map_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Mapping> {
    let mut current = value;
    for key in path {
        current = current.as_mapping()?.get(*key)?;
    }
    current.as_mapping()
}

/// Where a workload keeps its pod template (the mapping holding `spec`).
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        "PodTemplate" => &["template"],
        _ => return None,
    })
}

fn visit(value: &Value, document: usize, report: &mut QosReport) -> Result<(), QosError> {
    let Some(object) = value.as_mapping() else {
        report.notes.push(format!(
            "document {document}: skipped a value that is not an object"
        ));
        return Ok(());
    };
    let kind = str_at(object, "kind").unwrap_or("");
    let metadata = object.get("metadata").and_then(Value::as_mapping);
    let meta = |key: &str| metadata.and_then(|m| str_at(m, key));
    let namespace = meta("namespace").unwrap_or("default").to_string();
    let name = meta("name")
        .or_else(|| meta("generateName"))
        .unwrap_or("<unnamed>")
        .to_string();
    if let Some(items) = object.get("items") {
        if kind.ends_with("List") || kind.is_empty() {
            let Some(items) = items.as_sequence() else {
                return Err(QosError::Shape {
                    object: format!("document {document} ({kind})"),
                    field: "items".into(),
                    problem: "expected a list".into(),
                });
            };
            for item in items {
                visit(item, document, report)?;
            }
            return Ok(());
        }
    }
    if kind.is_empty() {
        report.notes.push(format!(
            "document {document}: skipped an object without kind"
        ));
        return Ok(());
    }
    let Some(path) = template_path(kind) else {
        report.notes.push(format!(
            "document {document}: skipped {kind} {namespace}/{name} (no pod template)"
        ));
        return Ok(());
    };
    let label = format!("{} {namespace}/{name}", kind.to_ascii_lowercase());
    let mut spec_path = path.to_vec();
    spec_path.push("spec");
    let Some(spec) = map_at(value, &spec_path) else {
        report.notes.push(format!(
            "document {document}: skipped {kind} {namespace}/{name} (no {})",
            spec_path.join(".")
        ));
        return Ok(());
    };
    let (class, reason) = classify_spec(spec, &label)?;
    report.pods.push(PodQos {
        namespace,
        name,
        kind: kind.to_string(),
        class,
        reason,
    });
    Ok(())
}

/// A quantity as written and its value.
type Setting = Option<(String, Quantity)>;

/// cpu and memory settings of one container, as written (zeros included).
struct Resources {
    label: String,
    /// (request, limit) for cpu and for memory.
    cpu: (Setting, Setting),
    memory: (Setting, Setting),
}

impl Resources {
    fn pairs(&self) -> [(&'static str, &Setting, &Setting); 2] {
        [
            ("cpu", &self.cpu.0, &self.cpu.1),
            ("memory", &self.memory.0, &self.memory.1),
        ]
    }
}

fn positive(setting: &Setting) -> bool {
    setting.as_ref().is_some_and(|(_, q)| q.is_positive())
}

const RESOURCES: [&str; 2] = ["cpu", "memory"];

fn classify_spec(spec: &Mapping, label: &str) -> Result<(QosClass, String), QosError> {
    let shape = |field: String, problem: &str| QosError::Shape {
        object: label.to_string(),
        field,
        problem: problem.to_string(),
    };
    let mut containers = Vec::new();
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(entries) = spec.get(list) else {
            continue;
        };
        if entries.is_null() {
            continue;
        }
        let entries = entries
            .as_sequence()
            .ok_or_else(|| shape(list.to_string(), "expected a list"))?;
        for (index, entry) in entries.iter().enumerate() {
            let at = format!("{list}[{index}]");
            let entry = entry
                .as_mapping()
                .ok_or_else(|| shape(at.clone(), "expected an object"))?;
            let name = str_at(entry, "name").map_or_else(|| format!("#{index}"), str::to_string);
            let mut settings: [[Setting; 2]; 2] = Default::default();
            if let Some(resources) = entry.get("resources").filter(|r| !r.is_null()) {
                let resources = resources
                    .as_mapping()
                    .ok_or_else(|| shape(format!("{at}.resources"), "expected an object"))?;
                for (slot, section) in ["requests", "limits"].into_iter().enumerate() {
                    let Some(list) = resources.get(section).filter(|l| !l.is_null()) else {
                        continue;
                    };
                    let field = format!("{at}.resources.{section}");
                    let list = list
                        .as_mapping()
                        .ok_or_else(|| shape(field.clone(), "expected an object"))?;
                    for (r, resource) in RESOURCES.iter().enumerate() {
                        let Some(raw) = list.get(*resource) else {
                            continue;
                        };
                        let (text, parsed) = quantity(raw).ok_or_else(|| QosError::Quantity {
                            object: label.to_string(),
                            field: format!("{field}.{resource}"),
                            value: describe(raw),
                        })?;
                        settings[r][slot] = Some((text, parsed));
                    }
                }
            }
            let [[cpu_req, cpu_lim], [mem_req, mem_lim]] = settings;
            containers.push(Resources {
                label: format!("{what} {name:?}"),
                cpu: (cpu_req, cpu_lim),
                memory: (mem_req, mem_lim),
            });
        }
    }
    Ok(decide(&containers))
}

fn decide(containers: &[Resources]) -> (QosClass, String) {
    // A request left out defaults to the limit, so it is set exactly when
    // one of the two is; only values above zero count.
    let any_set = containers
        .iter()
        .flat_map(Resources::pairs)
        .any(|(_, request, limit)| positive(request) || positive(limit));
    if !any_set {
        let zero_seen = containers
            .iter()
            .flat_map(Resources::pairs)
            .any(|(_, request, limit)| request.is_some() || limit.is_some());
        let reason = if containers.is_empty() {
            "the pod has no containers"
        } else if zero_seen {
            "no container sets cpu/memory requests or limits above zero"
        } else {
            "no container sets cpu/memory requests or limits"
        };
        return (QosClass::BestEffort, reason.to_string());
    }
    for c in containers {
        let missing: Vec<&str> = c
            .pairs()
            .iter()
            .filter(|(_, _, limit)| !positive(limit))
            .map(|(name, _, _)| *name)
            .collect();
        if !missing.is_empty() {
            return (
                QosClass::Burstable,
                format!("{}: no {} limit", c.label, missing.join(" or ")),
            );
        }
        for (resource, request, limit) in c.pairs() {
            if let (Some((req_text, req)), Some((lim_text, lim))) = (request, limit) {
                if req != lim {
                    return (
                        QosClass::Burstable,
                        format!(
                            "{}: {resource} request {req_text} != limit {lim_text}",
                            c.label
                        ),
                    );
                }
            }
        }
    }
    let reason = match containers.len() {
        1 => "the only container has cpu and memory limits equal to requests".to_string(),
        n => format!("all {n} containers have cpu and memory limits equal to requests"),
    };
    (QosClass::Guaranteed, reason)
}

/// A quantity as YAML/JSON gives it: a string, or a bare number (`cpu: 1`,
/// `cpu: 0.5`).
fn quantity(raw: &Value) -> Option<(String, Quantity)> {
    let text = match raw {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let parsed = Quantity::parse(&text)?;
    Some((text, parsed))
}

fn describe(raw: &Value) -> String {
    match raw {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Sequence(_) => "(a list)".to_string(),
        Value::Mapping(_) => "(an object)".to_string(),
        Value::Tagged(t) => format!("(tagged {})", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, containers: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{containers}"
        )
    }

    fn one(text: &str) -> PodQos {
        let pods = match classify_manifests(text) {
            Ok(pods) => pods,
            Err(e) => panic!("classify failed: {e}\n{text}"),
        };
        assert_eq!(pods.len(), 1, "{pods:?}");
        pods.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn table_of_pods() {
        // (containers section, class, reason)
        let cases: &[(&str, QosClass, &str)] = &[
            (
                "  containers:\n  - name: app\n    image: nginx\n",
                QosClass::BestEffort,
                "no container sets cpu/memory requests or limits",
            ),
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 500m, memory: 128Mi}\n      requests: {cpu: 500m, memory: 128Mi}\n",
                QosClass::Guaranteed,
                "the only container has cpu and memory limits equal to requests",
            ),
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 500m, memory: 128Mi}\n      requests: {cpu: 250m, memory: 128Mi}\n",
                QosClass::Burstable,
                "container \"app\": cpu request 250m != limit 500m",
            ),
            // a missing request defaults to the limit
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 1, memory: 1Gi}\n",
                QosClass::Guaranteed,
                "the only container has cpu and memory limits equal to requests",
            ),
            // equal quantities in different units, numbers and strings
            (
                "  containers:\n  - name: a\n    resources:\n      limits: {cpu: \"1\", memory: 1Gi}\n      requests: {cpu: 1000m, memory: 1024Mi}\n  - name: b\n    resources:\n      limits: {cpu: 0.5, memory: \"1e9\"}\n      requests: {cpu: 500m, memory: 1G}\n",
                QosClass::Guaranteed,
                "all 2 containers have cpu and memory limits equal to requests",
            ),
            // cpu only
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 1}\n      requests: {cpu: 1}\n",
                QosClass::Burstable,
                "container \"app\": no memory limit",
            ),
            // requests only
            (
                "  containers:\n  - name: app\n    resources:\n      requests: {memory: 64Mi}\n",
                QosClass::Burstable,
                "container \"app\": no cpu or memory limit",
            ),
            // one guaranteed container, one without resources
            (
                "  containers:\n  - name: a\n    resources:\n      limits: {cpu: 1, memory: 1Gi}\n  - name: b\n",
                QosClass::Burstable,
                "container \"b\": no cpu or memory limit",
            ),
            // only other resources: still BestEffort
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {nvidia.com/gpu: 1, ephemeral-storage: 1Gi}\n",
                QosClass::BestEffort,
                "no container sets cpu/memory requests or limits",
            ),
            // zero quantities do not count (Kubernetes' rule)
            (
                "  containers:\n  - name: app\n    resources:\n      requests: {cpu: 0, memory: \"0\"}\n      limits: {cpu: 0m}\n",
                QosClass::BestEffort,
                "no container sets cpu/memory requests or limits above zero",
            ),
            // an explicit zero request is not defaulted to the limit
            (
                "  containers:\n  - name: app\n    resources:\n      requests: {cpu: 0}\n      limits: {cpu: 1, memory: 1Gi}\n",
                QosClass::Burstable,
                "container \"app\": cpu request 0 != limit 1",
            ),
            // a zero limit is no limit
            (
                "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 1, memory: 0}\n",
                QosClass::Burstable,
                "container \"app\": no memory limit",
            ),
            (
                "  containers: []\n",
                QosClass::BestEffort,
                "the pod has no containers",
            ),
        ];
        for (containers, class, reason) in cases {
            let got = one(&pod("web", containers));
            assert_eq!(
                (got.class, got.reason.as_str()),
                (*class, *reason),
                "{containers}"
            );
            assert_eq!(
                (got.namespace.as_str(), got.name.as_str(), got.kind.as_str()),
                ("default", "web", "Pod")
            );
        }
    }

    #[test]
    fn init_containers_count() {
        let guaranteed =
            "  containers:\n  - name: app\n    resources:\n      limits: {cpu: 1, memory: 1Gi}\n";
        let got = one(&pod(
            "web",
            &format!("{guaranteed}  initContainers:\n  - name: init\n    image: busybox\n"),
        ));
        assert_eq!(got.class, QosClass::Burstable);
        assert_eq!(
            got.reason,
            "init container \"init\": no cpu or memory limit"
        );

        let got = one(&pod(
            "web",
            &format!("{guaranteed}  initContainers:\n  - name: init\n    resources:\n      limits: {{cpu: 100m, memory: 1Gi}}\n      requests: {{cpu: 0.1, memory: 1Gi}}\n"),
        ));
        assert_eq!(got.class, QosClass::Guaranteed);
        assert_eq!(
            got.reason,
            "all 2 containers have cpu and memory limits equal to requests"
        );

        // an init container alone makes a pod Burstable rather than BestEffort
        let got = one(&pod(
            "web",
            "  containers:\n  - name: app\n  initContainers:\n  - name: init\n    resources:\n      requests: {cpu: 10m}\n",
        ));
        assert_eq!(got.class, QosClass::Burstable);
    }

    #[test]
    fn lists_multi_document_and_workloads() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: prod}
  spec:
    containers: [{name: c}]
- apiVersion: v1
  kind: Service
  metadata: {name: svc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        resources:
          limits: {cpu: 250m, memory: 256Mi}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            resources: {requests: {cpu: 100m}}
---
"#;
        let report = match classify_manifests_report(text) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let rows: Vec<(&str, &str, &str, QosClass)> = report
            .pods
            .iter()
            .map(|p| {
                (
                    p.namespace.as_str(),
                    p.name.as_str(),
                    p.kind.as_str(),
                    p.class,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("prod", "a", "Pod", QosClass::BestEffort),
                ("shop", "web", "Deployment", QosClass::Guaranteed),
                ("default", "nightly", "CronJob", QosClass::Burstable),
            ]
        );
        assert_eq!(
            report.notes,
            ["document 1: skipped Service default/svc (no pod template)"]
        );
    }

    #[test]
    fn json_pod_list() {
        let text = r#"{"apiVersion":"v1","kind":"PodList","items":[
            {"kind":"Pod","metadata":{"name":"x","namespace":"kube-system"},
             "spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"2","memory":"1Gi"},"requests":{"cpu":"2000m","memory":"1073741824"}}}]}}]}"#;
        let got = one(text);
        assert_eq!(
            (got.namespace.as_str(), got.class),
            ("kube-system", QosClass::Guaranteed)
        );
    }

    #[test]
    fn bad_quantity_names_pod_container_and_field() {
        let text = pod(
            "web",
            "  containers:\n  - name: a\n  - name: b\n    resources:\n      limits: {cpu: abc}\n",
        );
        let err = classify_manifests(&text).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"pod default/web: containers[1].resources.limits.cpu: invalid quantity "abc""#)
        );

        let text = "kind: Deployment\nmetadata: {name: d, namespace: ns}\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: i\n        resources: {requests: {memory: [1]}}\n";
        let err = classify_manifests(text).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("deployment ns/d: initContainers[0].resources.requests.memory: invalid quantity (a list)")
        );
    }

    #[test]
    fn syntax_and_shape_errors_are_one_line() {
        let err = classify_manifests("kind: Pod\n---\nkind: [unclosed\n").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("document 2: invalid YAML/JSON: "),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");

        let err =
            classify_manifests("kind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("pod default/p: containers: expected a list")
        );
    }

    #[test]
    fn table_is_aligned() {
        let pods = [
            PodQos {
                namespace: "default".into(),
                name: "web".into(),
                kind: "Pod".into(),
                class: QosClass::BestEffort,
                reason: "no container sets cpu/memory requests or limits".into(),
            },
            PodQos {
                namespace: "kube-system".into(),
                name: "coredns".into(),
                kind: "Deployment".into(),
                class: QosClass::Burstable,
                reason: "container \"coredns\": no cpu limit".into(),
            },
        ];
        let expected = "\
NAMESPACE    NAME     KIND        QOS         REASON
default      web      Pod         BestEffort  no container sets cpu/memory requests or limits
kube-system  coredns  Deployment  Burstable   container \"coredns\": no cpu limit
";
        assert_eq!(render_table(&pods), expected);
        let json = serde_json::to_string(&pods[0]).unwrap_or_default();
        assert!(json.contains(r#""class":"BestEffort""#), "{json}");
    }
}
