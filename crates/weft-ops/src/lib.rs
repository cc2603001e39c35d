//! weft's operability checks: pure logic behind the host-side troubleshooting
//! commands. [`qos`] classifies pod manifests into Kubernetes QoS classes;
//! [`cgroup_driver`] compares the cgroup drivers kubelet and docker are set
//! up with; [`doctor`] judges the facts `weft doctor` gathers; [`kubepods`] finds
//! kubelet QoS cgroups left behind without a kubelet. Nothing here touches the network or spawns processes; files are
//! only read below an explicit root directory, so every check is unit-tested
//! against a temporary tree.

pub mod cgroup_driver;
pub mod doctor;
pub mod kubepods;
pub mod qos;
pub mod quantity;

pub use cgroup_driver::{check, CgroupDriver, CheckError, Detected, DriverReport, Source, Verdict};
pub use qos::{
    classify_manifests, classify_manifests_report, render_table, PodQos, QosClass, QosError,
    QosReport,
};
pub use quantity::Quantity;
