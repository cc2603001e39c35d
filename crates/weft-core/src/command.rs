//! The extension backend's command lines, read as flannel v0.28 reads
//! them: split into fields at whitespace, each field's `$VAR` and `${VAR}`
//! replaced from the environment, and the first field run as the program
//! with no shell in between. A variable's value stays one argument,
//! whatever it holds: `;`, `|` or `$(…)` in a value is text, never code
//! (flannel v0.26 ran these lines through `sh -c`; v0.28 stopped that).

/// A configured command, already split into fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    fields: Vec<String>,
}

impl CommandLine {
    /// Splits `text` at whitespace; `None` for a line with no fields.
    pub fn parse(text: &str) -> Option<CommandLine> {
        let fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        (!fields.is_empty()).then_some(CommandLine { fields })
    }

    /// The fields as configured, before expansion.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The program and its arguments with variables expanded through
    /// `lookup` (a missing variable becomes the empty string).
    pub fn expand(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
        self.fields
            .iter()
            .map(|f| expand_vars(f, &lookup))
            .collect()
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fields.join(" "))
    }
}

/// Go's `os.Expand`: `$NAME` (letters, digits, `_`), `${NAME}`, and the
/// one-character shell specials (`$1`, `$?`, `$$`, …). A `$` followed by
/// anything else is kept; a malformed `${` is dropped, as Go drops it.
pub fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // start of the text not yet copied
    let mut copied = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&text[copied..j]);
            let (name, width) = shell_name(&text[j + 1..]);
            match (name, width) {
                // malformed `${…`: Go eats the characters it looked at
                ("", w) if w > 0 => {}
                // `$` not followed by a name: kept
                ("", _) => out.push('$'),
                (name, _) => out.push_str(&lookup(name).unwrap_or_default()),
            }
            j += 1 + width;
            copied = j;
        } else {
            j += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The variable name at the start of `s` (just after a `$`) and how many
/// bytes it takes, by Go's `getShellName`. Every boundary returned is an
/// ASCII byte's, so slicing `s` there is always on a character boundary.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        for (i, c) in b.iter().enumerate().skip(1) {
            if *c == b'}' {
                if i == 1 {
                    // `${}`
                    return ("", 2);
                }
                return (&s[1..i], i + 1);
            }
        }
        // no closing brace
        return ("", 1);
    }
    if is_shell_special(b[0]) {
        return (&s[0..1], 1);
    }
    let len = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..len], len)
}

fn is_shell_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SUBNET" => Some("172.30.5.0/24".into()),
            "EVIL" => Some("x; touch /tmp/pwned $(id)".into()),
            "1" => Some("one".into()),
            "A_B2" => Some("ab".into()),
            "ΩMEGA" => Some("never".into()),
            _ => None,
        }
    }

    #[test]
    fn splits_on_any_whitespace_and_drops_empty_lines() {
        let c = CommandLine::parse("  /bin/add\t$SUBNET \n via  ").expect("fields");
        assert_eq!(c.fields(), ["/bin/add", "$SUBNET", "via"]);
        assert_eq!(CommandLine::parse(" \t\n"), None);
        assert_eq!(CommandLine::parse(""), None);
    }

    #[test]
    fn a_value_with_shell_syntax_stays_one_literal_argument() {
        let c = CommandLine::parse("/bin/echo $EVIL").expect("fields");
        assert_eq!(c.expand(env), ["/bin/echo", "x; touch /tmp/pwned $(id)"]);
    }

    #[test]
    fn expands_as_go_os_expand_does() {
        let cases = [
            ("$SUBNET", "172.30.5.0/24"),
            ("${SUBNET}", "172.30.5.0/24"),
            ("via=${SUBNET}!", "via=172.30.5.0/24!"),
            ("$SUBNETX", ""),
            ("$A_B2-", "ab-"),
            ("$1x", "onex"),
            ("${1}", "one"),
            ("$MISSING.", "."),
            ("cost$", "cost$"),
            ("a$ b", "a$ b"),
            ("a$.b", "a$.b"),
            ("${}x", "x"),
            ("${SUBNET", "SUBNET"),
            ("$ΩMEGA", "$ΩMEGA"),
            ("€$SUBNET€", "€172.30.5.0/24€"),
            ("$$", ""),
        ];
        for (text, want) in cases {
            assert_eq!(expand_vars(text, env), want, "{text:?}");
        }
    }

    #[test]
    fn displays_the_configured_fields() {
        let c = CommandLine::parse("ip  route add $SUBNET").expect("fields");
        assert_eq!(c.to_string(), "ip route add $SUBNET");
    }
}
