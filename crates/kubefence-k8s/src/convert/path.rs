//! Paths into an object (`spec.ingress[0].from`, the notation of the API
//! server's messages), and the path of the value at a position of a JSON
//! text: where serde_json stopped with an error.
//!
//! Finding the path from the error's position, rather than tracking it
//! while deserializing (`serde_path_to_error`), keeps the typed read to one
//! serde wrapper: every wrapper layer instantiates the deserializers of
//! every Kubernetes type read strictly once more (megabytes of the binary)
//! and costs time on every field of every object, for a path that is only
//! wanted when an object is wrong.

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// `spec.ingress[0].from`; empty for the object itself.
pub(super) fn text(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What serde_json's error says of where it stopped.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stop {
    /// serde_json's 1-based line; 0 when the error has no position.
    pub line: usize,
    /// Bytes from the start of that line.
    pub column: usize,
    /// A `missing field` error: serde_json stops at the `}` of the object
    /// that lacks the field, and the path is that object's, not the path
    /// of its last member (which a wrong-typed last member, stopping at the
    /// same byte of a compact text, has).
    pub missing_field: bool,
}

impl Stop {
    pub(super) fn of(error: &serde_json::Error) -> Self {
        Self {
            line: error.line(),
            column: error.column(),
            missing_field: error.to_string().starts_with("missing field"),
        }
    }
}

/// The path of the value serde_json was reading when it stopped at `stop`
/// in `text`: the member or element whose value was read last, or the
/// object or array being read when the stop is at its end. Best effort for
/// text that is not JSON (syntax errors): the path read so far.
pub(super) fn at(text: &str, stop: Stop) -> Vec<Segment> {
    if stop.line == 0 {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let line_start = if stop.line == 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', bytes)
            .nth(stop.line - 2)
            .map_or(bytes.len(), |newline| newline + 1)
    };
    let offset = (line_start + stop.column).min(bytes.len());
    let open = scan(bytes, offset);
    let last = open.len().saturating_sub(1);
    // serde_json stops after a wrong scalar but before a wrong list or
    // object (`[`, `{`): an element that stops there has begun. (A list or
    // object read where a struct or scalar was expected stops just after
    // its bracket, and is the container itself.)
    let before_container = matches!(bytes.get(offset), Some(b'[' | b'{'));
    open.into_iter()
        .enumerate()
        .filter_map(|(depth, container)| {
            // An enclosing container always holds the value being read; the
            // innermost one only once a member's value (or an element) has
            // begun, and, for an object lacking a field, never.
            let innermost = depth == last;
            match container {
                Open::Object {
                    key: Some(key),
                    in_value,
                } if !innermost || (in_value && !stop.missing_field) => Some(Segment::Key(key)),
                Open::Array { index, in_element }
                    if !innermost || in_element || before_container =>
                {
                    Some(Segment::Index(index))
                }
                _ => None,
            }
        })
        .collect()
}

/// A container open at the stop, and where in it the reader was.
#[derive(Debug)]
enum Open {
    /// The key of the member being read (None before its key), and whether
    /// its `:` was passed.
    Object { key: Option<String>, in_value: bool },
    /// The index of the element being read, and whether it has begun.
    Array { index: usize, in_element: bool },
}

/// The containers open before `offset`, outermost first. Each token is
/// taken whole, so a stop inside a string or number counts as its value.
fn scan(bytes: &[u8], offset: usize) -> Vec<Open> {
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < offset.min(bytes.len()) {
        match bytes[i] {
            b'{' | b'[' => {
                begin_value(&mut open);
                open.push(if bytes[i] == b'{' {
                    Open::Object {
                        key: None,
                        in_value: false,
                    }
                } else {
                    Open::Array {
                        index: 0,
                        in_element: false,
                    }
                });
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                i += 1;
            }
            b':' => {
                if let Some(Open::Object { in_value, .. }) = open.last_mut() {
                    *in_value = true;
                }
                i += 1;
            }
            b',' => {
                match open.last_mut() {
                    Some(Open::Object { key, in_value }) => {
                        *key = None;
                        *in_value = false;
                    }
                    Some(Open::Array { index, in_element }) => {
                        *index += 1;
                        *in_element = false;
                    }
                    None => {}
                }
                i += 1;
            }
            b'"' => {
                let end = string_end(bytes, i);
                match open.last_mut() {
                    Some(Open::Object {
                        key: key @ None,
                        in_value: false,
                    }) => *key = Some(decoded_key(&bytes[i..end])),
                    _ => begin_value(&mut open),
                }
                i = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                // A number or a literal (true, false, null).
                begin_value(&mut open);
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    i += 1;
                }
            }
        }
    }
    open
}

/// A value begins in the innermost container: an array's element has begun.
fn begin_value(open: &mut [Open]) {
    if let Some(Open::Array { in_element, .. }) = open.last_mut() {
        *in_element = true;
    }
}

/// The index just past the string that starts (with its quote) at `start`,
/// or the end of the text for an unterminated string.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A key's text with its escapes resolved (`"a\"b"` is `a"b`).
fn decoded_key(quoted: &[u8]) -> String {
    serde_json::from_slice::<String>(quoted).unwrap_or_else(|_| {
        let inner = quoted
            .get(1..quoted.len().saturating_sub(1))
            .unwrap_or_default();
        String::from_utf8_lossy(inner).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_at(text: &str, offset: usize, missing_field: bool) -> String {
        let line = 1 + text[..offset].matches('\n').count();
        let column = offset - text[..offset].rfind('\n').map_or(0, |n| n + 1);
        super::text(&at(
            text,
            Stop {
                line,
                column,
                missing_field,
            },
        ))
    }

    #[test]
    fn a_stop_after_a_scalar_is_that_member() {
        let text = r#"{"spec":{"ports":[{"port":"x"}]}}"#;
        let after_x = text.find(r#""x""#).map_or(0, |i| i + 3);
        assert_eq!(path_at(text, after_x, false), "spec.ports[0].port");
        // The same byte, for a missing field, is the object lacking it.
        assert_eq!(path_at(text, after_x, true), "spec.ports[0]");
    }

    #[test]
    fn a_stop_at_the_start_of_a_container_is_the_member_it_begins() {
        let text = r#"{"a":[1,2,{"b":{"c":1}}]}"#;
        let at_brace = text.find(r#"{"c""#).unwrap_or(0);
        assert_eq!(path_at(text, at_brace, false), "a[2].b");
        let after_inner = text.find("}}]").map_or(0, |i| i + 1);
        assert_eq!(path_at(text, after_inner, false), "a[2].b");
    }

    #[test]
    fn empty_containers_whitespace_and_escaped_keys() {
        let text = "{\n  \"a\\\"b\": [ ],\n  \"c\": 1\n}";
        let at_close = text.find(']').unwrap_or(0);
        assert_eq!(path_at(text, at_close, false), "a\"b");
        assert_eq!(path_at(text, text.len() - 1, true), "");
        assert_eq!(path_at(text, text.len() - 2, false), "c");
    }
}
