//! The writer's pure parts, without a kernel: words, rule encoding, and a
//! table taken through decode → changes → layout → decode. (What the
//! kernel makes of the bytes is tested against `iptables-legacy-restore`
//! in `weft-proxy/tests/xtables_netns.rs`.)

use std::borrow::Cow;

use super::abi::{self, Family};
use super::rule::{self, Jump, RuleError};
use super::table::{Info, Table, TableError};

fn encode(family: Family, text: &str) -> Result<rule::Rule, RuleError> {
    rule::encode(family, &rule::words(text)?)
}

#[test]
fn words_group_quotes_and_borrow_unescaped_ones() {
    let w = rule::words(r#"-m comment --comment "a/b -> 1.2.3.4:80" -j X"#).expect("words");
    assert_eq!(
        w,
        ["-m", "comment", "--comment", "a/b -> 1.2.3.4:80", "-j", "X"]
    );
    assert!(w.iter().all(|w| matches!(w, Cow::Borrowed(_))));
    let w = rule::words(r#"--comment "say \"hi\"""#).expect("words");
    assert_eq!(w[1], r#"say "hi""#);
    assert!(rule::words(r#"--comment "open"#).is_err());
}

#[test]
fn a_rule_encodes_its_header_matches_and_target() {
    let r = encode(
        Family::V4,
        "! -s 10.0.0.0/8 -d 10.96.0.1/32 -i eth0 -p tcp -m tcp --dport 80 -j ACCEPT",
    )
    .expect("encodes");
    let e = &r.entry;
    assert_eq!(r.jump, Jump::Fixed);
    assert_eq!(&e[0..4], &[10, 0, 0, 0]);
    assert_eq!(&e[4..8], &[10, 96, 0, 1]);
    assert_eq!(&e[8..12], &[255, 0, 0, 0]);
    assert_eq!(&e[12..16], &[255; 4]);
    assert_eq!(&e[16..21], b"eth0\0");
    // the name and its NUL must match
    assert_eq!(&e[48..54], &[0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(abi::read_u16(e, 80), 6);
    assert_eq!(e[83], abi::INV_SRCIP);
    // one tcp match (32 + 16), then the standard target
    assert_eq!(abi::read_u16(e, 88) as usize, 112 + 48);
    assert_eq!(abi::read_u16(e, 90) as usize, 112 + 48 + 40);
    assert_eq!(abi::read_name(&e[114..143]), b"tcp");
    // dpts 80:80, spts 0:65535
    assert_eq!(
        [
            abi::read_u16(e, 144),
            abi::read_u16(e, 146),
            abi::read_u16(e, 148),
            abi::read_u16(e, 150)
        ],
        [0, 65535, 80, 80]
    );
    assert_eq!(abi::read_u32(e, 160 + 32) as i32, abi::VERDICT_ACCEPT);
}

#[test]
fn jumps_and_fallthrough_are_left_for_the_layout() {
    let r = encode(Family::V4, "-m comment --comment x -j KUBE-SVC-ABC").expect("encodes");
    assert_eq!(r.jump, Jump::Chain("KUBE-SVC-ABC".into()));
    let r = encode(Family::V4, "-g KUBE-SVC-ABC").expect("encodes");
    assert_eq!(r.entry[82], Family::V4.goto_flag());
    let r = encode(Family::V4, "-m comment --comment \"no target\"").expect("encodes");
    assert_eq!(r.jump, Jump::Next);
}

#[test]
fn ipv6_rules_set_the_protocol_flag_and_take_bracketed_nat_addresses() {
    let r = encode(
        Family::V6,
        "-s fd00::/64 -p udp -m udp --dport 53 -j DNAT --to-destination [fd00::5]:5353",
    )
    .expect("encodes");
    let e = &r.entry;
    assert_eq!(e.len() % 8, 0);
    assert_eq!(abi::read_u16(e, 128), 17);
    assert_eq!(e[131], abi::IP6T_F_PROTO);
    let t = abi::read_u16(e, 140) as usize;
    assert_eq!(abi::read_name(&e[t + 2..t + 31]), b"DNAT");
    assert_eq!(e[t + 31], 2);
    // flags MAP_IPS | PROTO_SPECIFIED, the port in network order
    assert_eq!(abi::read_u32(e, t + 32), 3);
    assert_eq!(&e[t + 32 + 36..t + 32 + 38], &5353u16.to_be_bytes());
}

#[test]
fn what_is_not_modelled_is_unsupported_and_bad_values_name_the_option() {
    for text in [
        "-m limit --limit 5/s -j ACCEPT",
        "-p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT",
        "-m statistic --mode nth --every 2 -j ACCEPT",
        "-j LOG --log-prefix x",
        "-j SNAT --to-source 1.2.3.4",
        "-s 10.0.0.0/255.0.0.0 -j ACCEPT",
        "--fragment -j ACCEPT",
    ] {
        assert!(
            matches!(encode(Family::V4, text), Err(RuleError::Unsupported(_))),
            "{text}"
        );
    }
    let e = encode(Family::V4, "-s 10.0.0.300 -j ACCEPT").expect_err("bad address");
    assert_eq!(
        e.to_string(),
        "-s \"10.0.0.300\" is not an address or network"
    );
    let e = encode(Family::V4, "-p tcp -m tcp --dport http -j ACCEPT").expect_err("bad port");
    assert_eq!(e.to_string(), "--dport \"http\" is not a number");
    let e = encode(Family::V4, "-m conntrack --ctstate FRESH -j ACCEPT").expect_err("bad state");
    assert_eq!(e.to_string(), "--ctstate \"FRESH\" is not a state");
    let e = encode(Family::V4, "-m tcp --dport 80 -j ACCEPT").expect_err("no -p");
    assert_eq!(e.to_string(), "-m tcp needs -p tcp");
}

/// An empty nat table as the kernel would hand it out.
fn empty_nat(family: Family) -> (Info, Vec<u8>) {
    crate::xtables::table::empty_entries(family, "nat").expect("nat is standard")
}

fn decode_layout(table: &Table) -> Table {
    let blob = table.layout(0).expect("layout");
    Table::decode(table.family, "nat", blob.info, blob.buf, 0).expect("decodes its own layout")
}

#[test]
fn a_table_survives_changes_and_a_layout_round_trip() {
    for family in [Family::V4, Family::V6] {
        let (info, blob) = empty_nat(family);
        let mut t = Table::decode(family, "nat", info, blob, 0).expect("decode");
        assert_eq!(t.user_chains().count(), 0);
        t.declare("KUBE-SERVICES").expect("declare");
        t.declare("KUBE-SVC-A").expect("declare");
        t.append(
            "PREROUTING",
            encode(family, "-j KUBE-SERVICES").expect("rule"),
        )
        .expect("append");
        t.append(
            "KUBE-SERVICES",
            encode(family, "-p tcp -m tcp --dport 80 -j KUBE-SVC-A").expect("rule"),
        )
        .expect("append");
        t.append(
            "KUBE-SVC-A",
            encode(family, "-m comment --comment \"fall through\"").expect("rule"),
        )
        .expect("append");
        t.append("KUBE-SVC-A", encode(family, "-j RETURN").expect("rule"))
            .expect("append");
        t.insert(
            "KUBE-SVC-A",
            1,
            encode(family, "-m mark --mark 0x4000/0x4000 -j ACCEPT").expect("rule"),
        )
        .expect("insert");

        let back = decode_layout(&t);
        assert_eq!(
            back.user_chains().collect::<Vec<_>>(),
            ["KUBE-SERVICES", "KUBE-SVC-A"]
        );
        assert_eq!(back.rule_count("KUBE-SVC-A"), Some(3));
        assert_eq!(back.rule_count("PREROUTING"), Some(1));
        assert!(back
            .contains("KUBE-SERVICES", "-p tcp -m tcp --dport 80 -j KUBE-SVC-A")
            .expect("rule"));
        assert!(back
            .contains("KUBE-SVC-A", "-m comment --comment \"fall through\"")
            .expect("rule"));
        assert!(!back.contains("KUBE-SVC-A", "-j ACCEPT").expect("rule"));
        // a second trip lays out the same bytes
        assert_eq!(
            back.layout(0).expect("layout").buf,
            decode_layout(&back).layout(0).expect("layout").buf
        );

        // deleting: a full chain cannot go, nor can one still jumped to
        // be laid out
        let mut u = decode_layout(&back);
        let mut t = back;
        assert_eq!(
            t.delete_chain("KUBE-SVC-A"),
            Err(TableError::NotEmpty("KUBE-SVC-A".into()))
        );
        t.flush("KUBE-SVC-A").expect("flush");
        t.delete_chain("KUBE-SVC-A").expect("delete chain");
        assert!(matches!(t.layout(0), Err(TableError::StillJumpedTo(c)) if c == "KUBE-SVC-A"));
        // the jump removed first, the chain can go
        let jump = encode(family, "-p tcp -m tcp --dport 80 -j KUBE-SVC-A").expect("rule");
        u.delete("KUBE-SERVICES", &jump, "…").expect("delete rule");
        assert!(matches!(
            u.delete("KUBE-SERVICES", &jump, "that rule"),
            Err(TableError::NoRule { .. })
        ));
        u.flush("KUBE-SVC-A").expect("flush");
        u.delete_chain("KUBE-SVC-A").expect("delete chain");
        let mut back = decode_layout(&u);
        assert_eq!(back.rule_count("KUBE-SERVICES"), Some(0));
        assert_eq!(back.user_chains().collect::<Vec<_>>(), ["KUBE-SERVICES"]);
        assert_eq!(
            back.declare("PREROUTING"),
            Err(TableError::Builtin("PREROUTING".into()))
        );
        assert_eq!(
            back.declare("-bad"),
            Err(TableError::BadName("-bad".into()))
        );
    }
}

#[test]
fn udp_inverted_ports_set_udps_invflags() {
    let r = encode(Family::V4, "-p udp -m udp ! --dport 53 -j ACCEPT").expect("encodes");
    // the match's data: spts[2], dpts[2], invflags (then padding)
    let d = 112 + 32;
    assert_eq!(r.entry[d + 8], 0x02);
    assert_eq!(r.entry[d + 9], 0);
}

#[test]
fn options_given_twice_or_missing_are_invalid() {
    for (text, msg) in [
        ("-s 10.0.0.1 -s 10.0.0.2 -j ACCEPT", "-s given twice"),
        (
            "-p tcp -m tcp --dport 1 --dport 2 -j ACCEPT",
            "tcp: --dport given twice",
        ),
        ("-m comment -j ACCEPT", "-m comment needs --comment"),
        (
            "-m recent --name x -j ACCEPT",
            "-m recent needs --set or --rcheck or --update or --remove",
        ),
        ("-j MARK", "-j MARK needs --set-xmark"),
        ("-j DNAT", "-j DNAT needs --to-destination"),
        ("-j A -j B", "a second target (-j or -g)"),
    ] {
        let e = encode(Family::V4, text).expect_err(text);
        assert_eq!(e, RuleError::Invalid(msg.into()), "{text}");
    }
}

#[test]
fn quotes_group_anywhere_in_a_word_as_iptables_restore_reads_them() {
    let w = rule::words(r#"--comment a"b c"d "e\"f" "#).expect("words");
    assert_eq!(w, ["--comment", "ab cd", "e\"f"]);
    let e = rule::words(r#"--comment "open"#).expect_err("unterminated");
    assert!(e.to_string().starts_with("unterminated quote"), "{e}");
}

#[test]
fn new_chain_of_an_existing_name_is_refused() {
    let (info, blob) = empty_nat(Family::V4);
    let mut t = Table::decode(Family::V4, "nat", info, blob, 0).expect("decode");
    t.create("X").expect("create");
    assert_eq!(t.create("X"), Err(TableError::Exists("X".into())));
    assert_eq!(
        t.create("PREROUTING"),
        Err(TableError::Exists("PREROUTING".into()))
    );
}

/// Every byte of a real layout changed in a few ways: decoding refuses or
/// takes it, and what it takes lays out again, never a panic.
#[test]
fn damaged_tables_are_refused_without_panicking() {
    let (info, blob) = empty_nat(Family::V4);
    let mut t = Table::decode(Family::V4, "nat", info, blob, 0).expect("decode");
    t.declare("KUBE-SERVICES").expect("declare");
    for text in [
        "-j KUBE-SERVICES",
        "-d 10.0.0.1/32 -p tcp -m comment --comment x -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:8080",
        "-m comment --comment y",
    ] {
        t.append("PREROUTING", encode(Family::V4, text).expect("rule"))
            .expect("append");
    }
    let good = t.layout(0).expect("layout");
    let mut refused = 0;
    for at in 0..good.buf.len() {
        for value in [0u8, 0xff, good.buf[at].wrapping_add(8), good.buf[at] ^ 1] {
            let mut b = good.buf.clone();
            b[at] = value;
            match Table::decode(Family::V4, "nat", good.info, b, 0) {
                Ok(t) => {
                    let _ = t.layout(0);
                }
                Err(e) => {
                    assert!(!e.to_string().contains('\n'));
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 0);
}

#[test]
fn restore_text_applies_to_tables_in_memory() {
    use std::collections::BTreeMap;
    let mut tables = BTreeMap::new();
    for name in ["nat", "filter"] {
        let (info, buf) = crate::xtables::table::empty_entries(Family::V4, name).expect("standard");
        tables.insert(
            name.to_string(),
            Table::decode(Family::V4, name, info, buf, 0).expect("decode"),
        );
    }
    let text = "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.254.0.1/32 -p tcp -m tcp --dport 443 -j DNAT --to-destination 198.18.0.1:6443\nCOMMIT\n*filter\n-A FORWARD -s 100.64.0.0/10 -j ACCEPT\nCOMMIT\n";
    crate::xtables::restore::restore_in_memory(Family::V4, text, &mut tables).expect("applies");
    assert!(tables["nat"].has_chain("KUBE-SERVICES"));
    assert_eq!(tables["nat"].rule_count("KUBE-SERVICES"), Some(1));
    assert_eq!(tables["filter"].rule_count("FORWARD"), Some(1));
    let e = crate::xtables::restore::restore_in_memory(
        Family::V4,
        "*nope\nCOMMIT\n*nope\n-A X -j ACCEPT\nCOMMIT\n",
        &mut tables,
    );
    assert!(e.is_err());
}

/// Found by the restore_text fuzz target: two names that differ only after
/// a NUL were two chains in the model and one name in the kernel's layout.
#[test]
fn chain_names_with_control_characters_are_refused() {
    let (info, blob) = empty_nat(Family::V4);
    let mut t = Table::decode(Family::V4, "nat", info, blob, 0).expect("decode");
    for bad in ["FLANNE\u{1f}\0POSTRTG", "A\0B", "TAB\tX", "NL\n"] {
        assert!(
            matches!(t.declare(bad), Err(TableError::BadName(_))),
            "{bad:?} accepted"
        );
    }
    let text = "*nat\n:FLANNE\u{1f}\0POSTRTG - [0:0]\n:FLANNE\u{1f}\0POST'RTG - [0:0]\nCOMMIT\n";
    let mut tables = std::collections::BTreeMap::from([("nat".to_string(), t)]);
    assert!(crate::xtables::restore::restore_in_memory(Family::V4, text, &mut tables).is_err());
    let laid = tables["nat"].layout(0).expect("layout");
    Table::decode(Family::V4, "nat", laid.info, laid.buf, 0).expect("still decodes");
}
