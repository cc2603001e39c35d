//! The WireGuard configuration protocol's requests (what `wg` writes to
//! `/var/run/wireguard/<dev>.sock`), read and parsed without I/O of their
//! own: a request is an operation line (`get=1` or `set=1`), `key=value`
//! lines and an empty line. Bytes come from whoever can connect, so the
//! reader bounds each line, the lines of a request and its bytes, and the
//! parser checks every line before anything is applied.

use std::io::BufRead;
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::wg_key::{WgKey, WgSecret};

/// errno values the protocol answers with.
pub const EINVAL: i32 = 22;
pub const EMSGSIZE: i32 = 90;
pub const EPROTO: i32 = 71;

/// Limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes in one line, without its newline (`wg` writes < 200).
    pub line: usize,
    /// Lines in one request (a `set` of 10,000 peers is about 60,000).
    pub lines: usize,
    /// Bytes in one request.
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line: 4096,
            lines: 100_000,
            bytes: 8 << 20,
        }
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get,
    Set(Vec<String>),
    /// An operation this protocol does not have.
    Unknown,
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("a request of more than {0} lines")]
    TooManyLines(usize),
    #[error("a request of more than {0} bytes")]
    TooLarge(usize),
    #[error("a line that is not UTF-8")]
    NotText,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// The errno to answer with, if an answer can still be given.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ReadError::Io(_) => None,
            ReadError::NotText => Some(EPROTO),
            _ => Some(EMSGSIZE),
        }
    }
}

/// Reads one line of at most `max` bytes (without its newline); `None` at
/// the end of the stream. A line cut off by the end of the stream counts.
/// `used` adds up the request's bytes against `limits.bytes`.
fn read_line(
    r: &mut impl BufRead,
    max: usize,
    used: &mut usize,
    limits: &Limits,
) -> Result<Option<String>, ReadError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                finish(line).map(Some)
            };
        }
        let newline = buf.iter().position(|b| *b == b'\n');
        let take = newline.unwrap_or(buf.len());
        if line.len() + take > max {
            return Err(ReadError::LineTooLong(max));
        }
        line.extend_from_slice(&buf[..take]);
        let consumed = take + usize::from(newline.is_some());
        r.consume(consumed);
        *used += consumed;
        if *used > limits.bytes {
            return Err(ReadError::TooLarge(limits.bytes));
        }
        if newline.is_some() {
            return finish(line).map(Some);
        }
    }
}

fn finish(line: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(line).map_err(|_| ReadError::NotText)
}

/// Reads the next request; `None` when the client closed the stream.
/// Empty lines between requests are skipped.
pub fn read_request(r: &mut impl BufRead, limits: &Limits) -> Result<Option<Request>, ReadError> {
    let mut used = 0;
    let op = loop {
        match read_line(r, limits.line, &mut used, limits)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut body = Vec::new();
    loop {
        match read_line(r, limits.line, &mut used, limits)? {
            None => break,
            Some(l) if l.is_empty() => break,
            Some(l) => {
                if body.len() == limits.lines {
                    return Err(ReadError::TooManyLines(limits.lines));
                }
                body.push(l);
            }
        }
    }
    Ok(Some(match op.as_str() {
        "get=1" => Request::Get,
        "set=1" => Request::Set(body),
        _ => Request::Unknown,
    }))
}

/// What a `set` asks of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChange {
    pub remove: bool,
    pub update_only: bool,
    /// Some(None): the pre-shared key is removed (all zeros).
    pub psk: Option<Option<WgSecret>>,
    pub endpoint: Option<SocketAddr>,
    pub keepalive: Option<u16>,
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<IpNet>,
}

/// One step of a `set`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetStep {
    PrivateKey(WgSecret),
    ListenPort(u16),
    Fwmark(u32),
    ReplacePeers,
    Peer(WgKey, PeerChange),
}

/// Parses a `set`'s lines; the errno to answer when a line is wrong.
pub fn parse_set(lines: &[String]) -> Result<Vec<SetStep>, i32> {
    let mut steps: Vec<SetStep> = Vec::new();
    for line in lines {
        let (k, v) = line.split_once('=').ok_or(EPROTO)?;
        let peer = match steps.last_mut() {
            Some(SetStep::Peer(_, c)) => Some(c),
            _ => None,
        };
        let bool_value = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(EINVAL),
        };
        match (k, peer) {
            ("private_key", None) => steps.push(SetStep::PrivateKey(
                WgSecret::from_hex(v).map_err(|_| EINVAL)?,
            )),
            ("listen_port", None) => {
                steps.push(SetStep::ListenPort(v.parse().map_err(|_| EINVAL)?))
            }
            ("fwmark", None) => steps.push(SetStep::Fwmark(v.parse().map_err(|_| EINVAL)?)),
            ("replace_peers", None) => {
                if bool_value(v)? {
                    steps.push(SetStep::ReplacePeers)
                }
            }
            ("public_key", _) => {
                let key = WgKey::from_hex(v).map_err(|_| EINVAL)?;
                steps.push(SetStep::Peer(key, PeerChange::default()));
            }
            ("remove", Some(c)) => c.remove = bool_value(v)?,
            ("update_only", Some(c)) => c.update_only = bool_value(v)?,
            ("protocol_version", Some(_)) => {
                if v != "1" {
                    return Err(EPROTO);
                }
            }
            ("preshared_key", Some(c)) => {
                let k = WgSecret::from_hex(v).map_err(|_| EINVAL)?;
                c.psk = Some((k.0 != [0; 32]).then_some(k));
            }
            ("endpoint", Some(c)) => c.endpoint = Some(v.parse().map_err(|_| EINVAL)?),
            ("persistent_keepalive_interval", Some(c)) => {
                c.keepalive = Some(v.parse().map_err(|_| EINVAL)?)
            }
            ("replace_allowed_ips", Some(c)) => c.replace_allowed_ips = bool_value(v)?,
            ("allowed_ip", Some(c)) => c.allowed_ips.push(v.parse().map_err(|_| EINVAL)?),
            _ => return Err(EPROTO),
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], limits: &Limits) -> Vec<Result<Request, String>> {
        let mut r = std::io::BufReader::with_capacity(7, bytes);
        let mut out = Vec::new();
        loop {
            match read_request(&mut r, limits) {
                Ok(Some(q)) => out.push(Ok(q)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn requests_are_read_one_after_another() {
        let got = read_all(
            b"get=1\n\nset=1\nreplace_peers=true\n\n\nget=1\n\n",
            &Limits::default(),
        );
        assert_eq!(
            got,
            vec![
                Ok(Request::Get),
                Ok(Request::Set(vec!["replace_peers=true".into()])),
                Ok(Request::Get)
            ]
        );
        assert_eq!(
            read_all(b"hello=1\n\n", &Limits::default()),
            vec![Ok(Request::Unknown)]
        );
    }

    #[test]
    fn lines_requests_and_bytes_are_bounded() {
        let limits = Limits {
            line: 16,
            lines: 3,
            bytes: 64,
        };
        let long = format!("set=1\n{}\n\n", "a".repeat(17));
        assert_eq!(
            read_all(long.as_bytes(), &limits),
            vec![Err("a line longer than 16 bytes".into())]
        );
        // a line without an end is bounded too
        let endless = "b".repeat(1000);
        assert_eq!(
            read_all(endless.as_bytes(), &limits),
            vec![Err("a line longer than 16 bytes".into())]
        );
        let many = "set=1\na=1\na=1\na=1\na=1\n\n";
        assert_eq!(
            read_all(many.as_bytes(), &limits),
            vec![Err("a request of more than 3 lines".into())]
        );
        let limits = Limits {
            bytes: 20,
            ..limits
        };
        assert_eq!(
            read_all(b"set=1\naaaa=1\nbbbb=1\ncc=1\n\n", &limits),
            vec![Err("a request of more than 20 bytes".into())]
        );
        assert_eq!(
            read_all(b"set=1\n\xff\n\n", &Limits::default()),
            vec![Err("a line that is not UTF-8".into())]
        );
    }

    #[test]
    fn a_set_is_checked_whole() {
        let key = WgKey([9; 32]).to_hex();
        let lines: Vec<String> = [
            format!("public_key={key}"),
            "endpoint=198.18.0.12:51820".into(),
            "persistent_keepalive_interval=25".into(),
            "replace_allowed_ips=true".into(),
            "allowed_ip=172.30.12.0/24".into(),
        ]
        .into_iter()
        .collect();
        let steps = parse_set(&lines).expect("parses");
        assert_eq!(
            steps,
            vec![SetStep::Peer(
                WgKey([9; 32]),
                PeerChange {
                    endpoint: Some("198.18.0.12:51820".parse().expect("addr")),
                    keepalive: Some(25),
                    replace_allowed_ips: true,
                    allowed_ips: vec!["172.30.12.0/24".parse().expect("net")],
                    ..Default::default()
                }
            )]
        );
        assert_eq!(parse_set(&["allowed_ip=1.2.3.4/32".into()]), Err(EPROTO));
        assert_eq!(parse_set(&["listen_port=x".into()]), Err(EINVAL));
        assert_eq!(parse_set(&["no equals sign".into()]), Err(EPROTO));
        assert_eq!(
            parse_set(&[format!("public_key={key}"), "remove=maybe".into()]),
            Err(EINVAL)
        );
    }
}
