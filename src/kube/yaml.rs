//! The YAML a kubeconfig is written in, as far as `kubectl` writes it: block mappings, block
//! sequences (`- key: value` items included), plain, single- and double-quoted scalars, `{}` and
//! `[]`, comments. A file that is JSON is read as JSON. Anchors, multi-line scalars and flow
//! collections with content are refused with the line number: a kubeconfig never needs them, and
//! a YAML crate would cost more binary than the whole Kubernetes client. Pure: text in, value out.

use serde_json::{Map, Value};

/// Parses `text` into a JSON value; the error names the line.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"));
    }
    let lines: Vec<Line<'_>> = text
        .lines()
        .enumerate()
        .filter_map(|(n, raw)| {
            let body = strip_comment(raw).trim_end();
            if body.trim().is_empty() || body.trim() == "---" {
                return None;
            }
            let indent = body.len() - body.trim_start().len();
            Some(Line {
                n: n + 1,
                indent,
                text: body.trim_start(),
            })
        })
        .collect();
    if lines.is_empty() {
        return Ok(Value::Null);
    }
    let mut at = 0;
    let value = block(&lines, &mut at, lines[0].indent)?;
    if at < lines.len() {
        return Err(format!("line {}: unexpected indentation", lines[at].n));
    }
    Ok(value)
}

struct Line<'a> {
    n: usize,
    indent: usize,
    text: &'a str,
}

// A `#` starts a comment at the line's start or after a space, outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (prev == ' ' || prev == '\t') => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

// The block (mapping or sequence) whose lines start at `indent`.
fn block(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Value, String> {
    if lines[*at].text.starts_with("- ") || lines[*at].text == "-" {
        sequence(lines, at, indent)
    } else {
        mapping(lines, at, indent, None)
    }
}

fn sequence(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Value, String> {
    let mut items = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent {
        let line = &lines[*at];
        let Some(rest) = line.text.strip_prefix('-') else {
            break;
        };
        let rest = rest.trim_start();
        if rest.is_empty() {
            *at += 1;
            items.push(nested(lines, at, indent)?);
        } else if key_value(rest).is_some() {
            // `- key: value` opens a mapping whose keys sit where `key` does.
            let inner = indent + (line.text.len() - rest.len());
            items.push(mapping(lines, at, inner, Some(rest))?);
        } else {
            items.push(scalar(rest, line.n)?);
            *at += 1;
        }
    }
    Ok(Value::Array(items))
}

// A mapping at `indent`; `first` is the text of its first entry when it shares a line with `- `.
fn mapping(
    lines: &[Line<'_>],
    at: &mut usize,
    indent: usize,
    first: Option<&str>,
) -> Result<Value, String> {
    let mut map = Map::new();
    let mut pending = first;
    loop {
        let (text, n) = match pending.take() {
            Some(t) => (t, lines[*at].n),
            None => {
                if *at >= lines.len() || lines[*at].indent != indent {
                    break;
                }
                if lines[*at].text.starts_with("- ") {
                    break;
                }
                (lines[*at].text, lines[*at].n)
            }
        };
        let Some((key, value)) = key_value(text) else {
            return Err(format!("line {n}: expected 'key: value'"));
        };
        *at += 1;
        let value = if value.is_empty() {
            nested(lines, at, indent)?
        } else {
            scalar(value, n)?
        };
        map.insert(unquote(key, n)?, value);
    }
    Ok(Value::Object(map))
}

// What follows `key:` on the next lines: a deeper block, a sequence at the same indentation
// (YAML allows `key:\n- item`), or nothing (null).
fn nested(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Value, String> {
    match lines.get(*at) {
        Some(next) if next.indent > indent => block(lines, at, next.indent),
        Some(next) if next.indent == indent && next.text.starts_with('-') => {
            sequence(lines, at, indent)
        }
        _ => Ok(Value::Null),
    }
}

// `key: value` or `key:` (outside quotes); `None` when the text is not a mapping entry.
fn key_value(text: &str) -> Option<(&str, &str)> {
    let (mut single, mut double) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ':' if !single && !double => {
                let rest = &text[i + 1..];
                if rest.is_empty() || rest.starts_with(' ') {
                    return Some((text[..i].trim(), rest.trim()));
                }
            }
            _ => {}
        }
    }
    None
}

fn scalar(text: &str, n: usize) -> Result<Value, String> {
    match text {
        "{}" => return Ok(Value::Object(Map::new())),
        "[]" => return Ok(Value::Array(Vec::new())),
        "null" | "~" => return Ok(Value::Null),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if text.starts_with(['{', '[', '&', '*', '|', '>', '!']) {
        return Err(format!(
            "line {n}: flow collections, anchors, tags and block scalars are not read in a kubeconfig"
        ));
    }
    Ok(Value::String(unquote(text, n)?))
}

fn unquote(text: &str, n: usize) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("line {n}: unterminated string"))?;
        // A double-quoted YAML scalar escapes as JSON does, for what a kubeconfig holds.
        return serde_json::from_str(&format!("\"{inner}\""))
            .map_err(|e| format!("line {n}: bad escape: {e}"));
    }
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("line {n}: unterminated string"))?;
        return Ok(inner.replace("''", "'"));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn reads_what_kubectl_writes() {
        let text = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tQ0E=
    server: https://127.0.0.1:6443/prefix
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: \"kind-kind\"
  name: kind-kind
current-context: 'kind-kind' # a comment
kind: Config
preferences: {}
users:
- name: kind-kind
  user:
    token: abc#def
    insecure: true
    list:
    - a
    - 'b c'
";
        let v = parse(text).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443/prefix"
        );
        assert_eq!(v["clusters"][0]["name"], "kind-kind");
        assert_eq!(v["contexts"][0]["context"]["user"], "kind-kind");
        assert_eq!(v["current-context"], "kind-kind");
        assert_eq!(v["preferences"], json!({}));
        assert_eq!(v["users"][0]["user"]["token"], "abc#def");
        assert_eq!(v["users"][0]["user"]["insecure"], true);
        assert_eq!(v["users"][0]["user"]["list"], json!(["a", "b c"]));
    }

    #[test]
    fn json_is_yaml_too_and_odd_yaml_names_its_line() {
        assert_eq!(parse(r#"{"a": [1]}"#).unwrap(), json!({"a": [1]}));
        let e = parse("a: 1\nb: |\n  text\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(parse("a: 1\n   b: 2\n").is_err());
    }
}
