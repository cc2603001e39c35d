//! An endpoint's `ip:port` text, the order kube-proxy gives endpoints (its
//! iptables chains list them sorted by it, and hash it into their names),
//! kept on the stack. Planning a 250,000-endpoint cold start spent a third
//! of its time formatting one `String` per endpoint, and more allocating
//! them, only to sort them; this key compares as that text does, with no
//! allocation and a direct writer for IPv4.

use std::fmt::{self, Write};
use std::net::SocketAddr;

/// The longest text: `[` + 45 characters of IPv6 + `]:` + 5 digits.
const MAX: usize = 56;

/// `ip:port` (`[ip6]:port`) as text, ordered as the text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EndpointText {
    buf: [u8; MAX],
    len: u8,
}

impl EndpointText {
    pub fn of(addr: SocketAddr) -> EndpointText {
        let mut t = EndpointText {
            buf: [0; MAX],
            len: 0,
        };
        match addr {
            SocketAddr::V4(a) => {
                for (i, octet) in a.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    t.decimal(octet.into());
                }
                t.push(b':');
                t.decimal(a.port().into());
            }
            // (IPv6's text rules, zero runs and embedded IPv4, are std's)
            SocketAddr::V6(_) => {
                let _ = write!(t, "{addr}");
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        // only ASCII is ever written (digits, '.', ':', '[', ']', hex)
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = b;
            self.len += 1;
        }
    }

    fn decimal(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.push(d);
        }
    }
}

impl Write for EndpointText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| self.push(b));
        Ok(())
    }
}

impl Ord for EndpointText {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for EndpointText {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for EndpointText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_std_s_and_orders_as_it_does() {
        let addrs: Vec<SocketAddr> = [
            "10.0.0.9:80",
            "10.0.0.10:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "172.30.1.2:8080",
            "[fd00::1]:80",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[::ffff:10.0.0.1]:443",
            "[2001:db8::]:9",
        ]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
        for a in &addrs {
            assert_eq!(EndpointText::of(*a).as_str(), a.to_string());
        }
        let mut by_key = addrs.clone();
        by_key.sort_by_key(|a| EndpointText::of(*a));
        let mut by_text = addrs;
        by_text.sort_by_key(|a| a.to_string());
        assert_eq!(by_key, by_text);
    }
}
