use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::*;

#[test]
fn heads_are_read_within_the_limit() {
    assert_eq!(parse_head(b"GET /metrics HT", 64), None);
    assert_eq!(
        parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 64),
        Some(Head::Request("GET".into(), "/metrics".into()))
    );
    assert_eq!(parse_head(&[b'a'; 64], 64), Some(Head::TooLarge));
    // the end arrived, but past the limit
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend([b'y'; 100]);
    big.extend(b"\r\n\r\n");
    assert_eq!(parse_head(&big, 64), Some(Head::TooLarge));
    assert_eq!(
        parse_head(b"\xff\xfe / HTTP/1.1\r\n\r\n", 64),
        Some(Head::Bad)
    );
    assert_eq!(
        parse_head(b"GET nopath HTTP/1.1\r\n\r\n", 64),
        Some(Head::Bad)
    );
    assert_eq!(parse_head(b"GET / SMTP\r\n\r\n", 64), Some(Head::Bad));
}

/// A server within `limits` on a thread of its own; its address.
fn server(limits: Limits) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            serve_limited(
                l,
                |_, path| {
                    let body = if path == "/big" {
                        "b".repeat(32 << 20)
                    } else {
                        format!("{path}\n")
                    };
                    Response::from(("200 OK", "text/plain", body))
                },
                limits,
            )
            .await;
        });
    });
    rx.recv().expect("server address")
}

fn get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// Whether the server closed `c` (EOF) within `within`.
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 64];
    matches!(c.read(&mut b), Ok(0))
}

#[test]
fn idle_connections_beyond_the_cap_are_closed_and_the_rest_time_out() {
    let addr = server(Limits {
        connections: 4,
        read_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // the server took four; the other six are closed at once
    std::thread::sleep(Duration::from_millis(100));
    let closed_now = idle
        .iter_mut()
        .filter_map(|c| closed_within(c, Duration::from_millis(50)).then_some(()))
        .count();
    assert_eq!(
        closed_now, 6,
        "connections over the cap of 4 closed at once"
    );
    // the four held ones end after the read timeout, then a probe is answered
    let t = Instant::now();
    for c in idle.iter_mut() {
        assert!(
            closed_within(c, Duration::from_secs(2)),
            "an idle connection outlived the read timeout"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let answer = get(addr).expect("a probe after the flood");
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("/healthz\n"),
        "{answer}"
    );
}

#[test]
fn a_request_over_the_size_limit_is_refused() {
    let addr = server(Limits {
        max_request: 1024,
        ..Limits::default()
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = b"GET / HTTP/1.1\r\nX-Junk: ".to_vec();
    req.extend(std::iter::repeat_n(b'j', 100_000));
    // the server answers after 1 KiB and closes; the rest may be refused
    let _ = c.write_all(&req);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
}

#[test]
fn a_client_that_never_reads_does_not_hold_its_slot() {
    let addr = server(Limits {
        connections: 1,
        write_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    // a 32 MiB answer that is never read fills the socket buffers
    let mut hog = TcpStream::connect(addr).expect("connect");
    hog.write_all(b"GET /big HTTP/1.1\r\n\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(600));
    // the one slot is free again
    let answer = get(addr).expect("answered after the write timeout");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
