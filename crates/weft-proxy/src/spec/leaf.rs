//! A field's value however it was read: a JSON value whose type is still
//! to be checked (weft's store, files), or a value the protobuf decoder
//! already typed (the API watch's EndpointSlices). The checks that follow
//! ([`super::endpoints`]) are the same for both, so both give the same
//! endpoint set or the same one-line error.

use arrayvec::ArrayString;
use serde_json::Value;

use super::fields::Fields;
use super::shared_text::NodeName;
use super::SpecError;

/// A field's value as it was read: a JSON value (its type still to be
/// checked), or already typed (protobuf: the decoder checked the type).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Leaf<'v> {
    Json(&'v Value),
    Str(&'v str),
    Bool(bool),
    Int(i64),
    Texts(&'v [WireText]),
    /// A node name, already the process's shared copy.
    Node(&'v NodeName),
}

impl Leaf<'_> {
    /// The error of a typed leaf read as another type (a JSON leaf's type
    /// is checked by [`Fields`]).
    fn typed_as(self, wanted: &str) -> String {
        let got = match self {
            Leaf::Json(_) => "a JSON value",
            Leaf::Str(_) => "a string",
            Leaf::Bool(_) => "a boolean",
            Leaf::Int(_) => "an integer",
            Leaf::Texts(_) => "a list",
            Leaf::Node(_) => "a node name",
        };
        format!("expected {wanted}, got {got}")
    }
}

/// An optional string leaf; the error's field is left for the caller.
pub(crate) fn leaf_str<'v>(f: &Fields, v: Option<Leaf<'v>>) -> Result<Option<&'v str>, SpecError> {
    match v {
        None => Ok(None),
        Some(Leaf::Json(j)) => f.str(Some(j), ""),
        Some(Leaf::Str(s)) => Ok(Some(s)),
        Some(Leaf::Node(n)) => Ok(Some(n)),
        Some(other) => Err(f.err("", other.typed_as("a string"))),
    }
}

/// An optional boolean leaf.
pub(crate) fn leaf_bool(f: &Fields, v: Option<Leaf<'_>>) -> Result<Option<bool>, SpecError> {
    match v {
        None => Ok(None),
        Some(Leaf::Json(j)) => f.bool(Some(j), ""),
        Some(Leaf::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(f.err("", other.typed_as("true or false"))),
    }
}

/// An optional integer leaf in `lo..=hi`.
pub(crate) fn leaf_int(
    f: &Fields,
    v: Option<Leaf<'_>>,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, SpecError> {
    match v {
        None => Ok(None),
        Some(Leaf::Json(j)) => f.int(Some(j), "", lo, hi),
        Some(Leaf::Int(i)) if (lo..=hi).contains(&i) => Ok(Some(i)),
        Some(Leaf::Int(i)) => Err(f.err("", format!("{i} is out of range {lo}-{hi}"))),
        Some(other) => Err(f.err("", other.typed_as(&format!("an integer {lo}-{hi}")))),
    }
}

/// A list leaf's items.
pub(crate) enum Items<'v> {
    Json(&'v [Value]),
    Texts(&'v [WireText]),
}

impl<'v> Items<'v> {
    pub(crate) fn read(f: &Fields, v: Option<Leaf<'v>>) -> Result<Items<'v>, SpecError> {
        match v {
            None => Ok(Items::Texts(&[])),
            Some(Leaf::Json(j)) => f.list(Some(j), "").map(Items::Json),
            Some(Leaf::Texts(t)) => Ok(Items::Texts(t)),
            Some(other) => Err(f.err("", other.typed_as("a list"))),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Items::Json(a) => a.len(),
            Items::Texts(a) => a.len(),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<Leaf<'v>> {
        match self {
            Items::Json(a) => a.get(i).map(Leaf::Json),
            Items::Texts(a) => a.get(i).map(|t| Leaf::Str(t.as_str())),
        }
    }
}

/// The longest text kept inline: an IPv6 address with an IPv4 address at
/// its end, the longest IP address, is 45 characters.
const INLINE_TEXT: usize = 46;

/// A string the protobuf decoder read: inline when it is short (any IP
/// address), on the heap otherwise (a wrong value, kept whole for its
/// error).
#[derive(Clone, PartialEq, Eq)]
pub enum WireText {
    Short(ArrayString<INLINE_TEXT>),
    Long(Box<str>),
}

impl WireText {
    pub fn as_str(&self) -> &str {
        match self {
            WireText::Short(s) => s,
            WireText::Long(s) => s,
        }
    }
}

impl From<&str> for WireText {
    fn from(s: &str) -> WireText {
        match ArrayString::from(s) {
            Ok(short) => WireText::Short(short),
            Err(_) => WireText::Long(s.into()),
        }
    }
}

impl std::fmt::Debug for WireText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}
