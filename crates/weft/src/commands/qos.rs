//! `weft qos`: each pod's QoS class (Guaranteed, Burstable, BestEffort)
//! with the reason, from pod manifests in YAML or JSON (the article's
//! troubleshooting: QoS classes decide which pods the kubelet evicts first).

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct QosArgs {
    /// Manifest files ("-" for stdin): Pods, Lists, workloads with pod templates
    #[arg(required = true)]
    files: Vec<String>,
    /// table or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
}

pub fn run(a: QosArgs) -> Result<()> {
    let mut pods = Vec::new();
    let mut notes = Vec::new();
    for f in &a.files {
        let text = if f == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?
        };
        let report = weft_ops::qos::classify_manifests_report(&text).with_context(|| f.clone())?;
        pods.extend(report.pods);
        notes.extend(report.notes.into_iter().map(|n| format!("{f}: {n}")));
    }
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&pods)?);
    } else {
        print!("{}", weft_ops::qos::render_table(&pods));
    }
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(())
}
