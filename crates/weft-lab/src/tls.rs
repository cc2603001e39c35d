//! Certificates for the lab's TLS servers (etcd, kube-apiserver), made
//! with openssl: a CA per use and keys signed by it, all ECDSA P-256
//! (fast to generate), valid for two days, as `<name>.key`/`<name>.pem`.

use std::path::Path;

use anyhow::Result;

use crate::netns::sh;

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed CA, `ca.key` and `ca.pem` in `dir`.
pub(crate) fn make_ca(dir: &Path, common_name: &str) -> Result<()> {
    let p = |n: &str| dir.join(n).display().to_string();
    let subject = format!("/CN={common_name}");
    let (key, pem) = (p("ca.key"), p("ca.pem"));
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &pem]);
    sh("openssl", &args).map(|_| ())
}

/// `<name>.key` and `<name>.pem` in `dir` for `subject`, signed by the CA
/// there, with the extensions `ext` (openssl's extfile syntax).
pub(crate) fn sign(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<()> {
    let p = |n: &str| dir.join(n).display().to_string();
    let (key, csr, pem, extfile) = (
        p(&format!("{name}.key")),
        p(&format!("{name}.csr")),
        p(&format!("{name}.pem")),
        p(&format!("{name}.ext")),
    );
    std::fs::write(&extfile, ext)?;
    let mut req = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
    req.extend(EC);
    sh("openssl", &req)?;
    let (ca_pem, ca_key) = (p("ca.pem"), p("ca.key"));
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    )
    .map(|_| ())
}
