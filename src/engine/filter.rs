//! Which listed files to download: `STORAGE_ALLOW_PATTERNS` and `STORAGE_IGNORE_PATTERNS`, in
//! KServe's format and meaning (its PR #5119), applied to the listing of every source before
//! the plan. Pure, no I/O.
//!
//! - A value is a JSON array of strings (`["*.json","*.safetensors"]`), a JSON string (one
//!   pattern), or else a comma-separated list (`*.json, *.txt`). An empty list filters nothing.
//! - A pattern is matched, whole, against the file's path relative to what the URI names
//!   (`config.json`, `sub/weights.bin`; a URI naming one file: its basename), with Python's
//!   `fnmatch` rules: `*` any run of characters, `/` included; `?` one character; `[seq]` one
//!   of the characters or `a-z` ranges in it; `[!seq]` one not in it; a `[` with no closing `]`
//!   is itself; no escapes, and case counts.
//! - A pattern ending in `/` names a folder and takes everything below it (`onnx/` is
//!   `onnx/*`), as `huggingface_hub` reads the patterns KServe hands it for `hf://`; under plain
//!   `fnmatch` it would match no file at all.
//! - A file is kept when it matches some allow pattern (or none are given) and no ignore
//!   pattern.

use crate::fetch::Object;

/// The allow and ignore patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub(crate) allow: Vec<String>,
    pub(crate) ignore: Vec<String>,
}

/// The variables the patterns come from, for messages.
pub(crate) const ALLOW_VAR: &str = "STORAGE_ALLOW_PATTERNS";
pub(crate) const IGNORE_VAR: &str = "STORAGE_IGNORE_PATTERNS";

impl Filter {
    /// Whether no pattern is given: everything is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.ignore.is_empty()
    }

    /// Whether the file at `path` (relative to what the URI names) is downloaded.
    pub(crate) fn keeps(&self, path: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| matches(p, path)))
            && !self.ignore.iter().any(|p| matches(p, path))
    }

    /// The patterns as set: `STORAGE_ALLOW_PATTERNS ["*.json"]`, with `and` between the two.
    pub(crate) fn describe(&self) -> String {
        let list = |p: &[String]| serde_json::to_string(p).expect("strings serialize");
        let mut parts = Vec::new();
        if !self.allow.is_empty() {
            parts.push(format!("{ALLOW_VAR} {}", list(&self.allow)));
        }
        if !self.ignore.is_empty() {
            parts.push(format!("{IGNORE_VAR} {}", list(&self.ignore)));
        }
        parts.join(" and ")
    }

    /// Splits a listing into the objects kept and the paths left out. Objects outside the
    /// prefix and folder markers are kept: the plan drops them, as it always has.
    pub(crate) fn apply(
        &self,
        prefix: &str,
        objects: Vec<Object>,
        relative: impl Fn(&str, &str) -> Option<String>,
    ) -> (Vec<Object>, Vec<String>) {
        if self.is_empty() {
            return (objects, Vec::new());
        }
        let mut left_out = Vec::new();
        let kept = objects
            .into_iter()
            .filter(|o| match relative(prefix, &o.key) {
                Some(path) if !path.is_empty() && !path.ends_with('/') => {
                    let keep = self.keeps(&path);
                    if !keep {
                        left_out.push(path);
                    }
                    keep
                }
                _ => true,
            })
            .collect();
        left_out.sort();
        (kept, left_out)
    }
}

/// Reads one variable's value: a JSON array of strings, a JSON string, or a comma list.
pub(crate) fn parse_list(value: &str) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let trimmed = value.trim();
    let patterns = match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "the JSON array holds {other}, which is not a string pattern"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Ok(Value::String(s)) => vec![s],
        // A bare number or `true`: a pattern that happens to be valid JSON.
        Ok(Value::Number(_) | Value::Bool(_)) => vec![trimmed.to_string()],
        Ok(other) => {
            return Err(format!(
                "{other} is neither a JSON array of patterns nor a comma-separated list"
            ));
        }
        // Not JSON (KServe's fallback, `[ab]*.json` included): a comma list.
        Err(_) => trimmed.split(',').map(|p| p.trim().to_string()).collect(),
    };
    Ok(patterns.into_iter().filter(|p| !p.is_empty()).collect())
}

// One piece of a pattern.
enum Token {
    Char(char),
    // `?`
    One,
    // `*`
    Any,
    // `[...]`: negated, and the single characters and ranges inside.
    Set(bool, Vec<(char, char)>),
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                // Runs of `*` are one.
                if !matches!(out.last(), Some(Token::Any)) {
                    out.push(Token::Any);
                }
                i += 1;
            }
            '?' => {
                out.push(Token::One);
                i += 1;
            }
            '[' => match set(&chars, i + 1) {
                Some((token, next)) => {
                    out.push(token);
                    i = next;
                }
                None => {
                    out.push(Token::Char('['));
                    i += 1;
                }
            },
            c => {
                out.push(Token::Char(c));
                i += 1;
            }
        }
    }
    out
}

// The set that starts at `start` (just after `[`) and the index after its `]`; `None` when no
// `]` closes it. As in Python: `!` first negates, a `]` first (after any `!`) is a member.
fn set(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut j = start;
    let negated = chars.get(j) == Some(&'!');
    if negated {
        j += 1;
    }
    let body_start = j;
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while chars.get(j)? != &']' {
        j += 1;
    }
    let body = &chars[body_start..j];
    let mut items = Vec::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            // A reversed range (`z-a`) holds nothing, as in Python.
            if body[k] <= body[k + 2] {
                items.push((body[k], body[k + 2]));
            }
            k += 3;
        } else {
            items.push((body[k], body[k]));
            k += 1;
        }
    }
    Some((Token::Set(negated, items), j + 1))
}

fn matches_one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(t) => *t == c,
        Token::One => true,
        Token::Any => unreachable!("`*` is handled by the matcher"),
        Token::Set(negated, items) => {
            items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

// A pattern against a path: `fnmatch`, a folder pattern (`sub/`) taking what is below it.
fn matches(pattern: &str, path: &str) -> bool {
    if pattern.ends_with('/') {
        fnmatch(&format!("{pattern}*"), path)
    } else {
        fnmatch(pattern, path)
    }
}

/// Whether `name` matches `pattern` whole, as Python's `fnmatch.fnmatchcase` says.
pub(crate) fn fnmatch(pattern: &str, name: &str) -> bool {
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    // Greedy with one backtrack point, the last `*`: linear in practice, never exponential.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if matches_one(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| matches!(token, Token::Any))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_as_python() {
        // (pattern, name, what Python's fnmatch.fnmatchcase answers)
        let cases = [
            ("*.json", "config.json", true),
            ("*.json", "sub/config.json", true),
            ("*.json", "config.json.bak", false),
            ("*", "", true),
            ("*", "a/b/c", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYcZ", false),
            ("sub/*", "sub/a/b", true),
            ("sub/*", "other/sub/a", false),
            ("?", "a", true),
            ("?", "/", true),
            ("?", "ab", false),
            (
                "model-0000?-of-00002.safetensors",
                "model-00001-of-00002.safetensors",
                true,
            ),
            ("[abc].txt", "b.txt", true),
            ("[abc].txt", "d.txt", false),
            ("[!abc].txt", "d.txt", true),
            ("[!abc].txt", "a.txt", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[!a-c]x", "dx", true),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[z-a]", "m", false),
            ("[^a]", "^", true),
            ("[^a]", "b", false),
            ("[", "[", true),
            ("[abc", "[abc", true),
            ("a[", "a[", true),
            ("\\*", "\\x", true),
            ("\\*", "*", false),
            ("*.JSON", "a.json", false),
            ("é?", "éü", true),
            ("**/*.bin", "a/b.bin", true),
            ("**/*.bin", "b.bin", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(fnmatch(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn no_exponential_backtracking() {
        let name = "a".repeat(10_000);
        assert!(!fnmatch(&format!("{}b", "*a".repeat(50)), &name));
    }

    #[test]
    fn lists_as_kserve_reads_them() {
        let ok = |v: &str| parse_list(v).unwrap();
        assert_eq!(
            ok(r#"["*.json","*.safetensors"]"#),
            ["*.json", "*.safetensors"]
        );
        assert_eq!(ok(r#""*.json""#), ["*.json"]);
        assert_eq!(ok("*.json, *.txt ,,"), ["*.json", "*.txt"]);
        assert_eq!(ok("config.json"), ["config.json"]);
        assert_eq!(ok("[]"), Vec::<String>::new());
        assert_eq!(ok("42"), ["42"]);
        assert!(
            parse_list(r#"["*.json", 3]"#)
                .unwrap_err()
                .contains("not a string")
        );
        assert_eq!(ok("[ab]*.json"), ["[ab]*.json"]);
        assert!(parse_list(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn allow_then_ignore() {
        let f = Filter {
            allow: vec!["*.json".into(), "*.safetensors".into()],
            ignore: vec!["*/optimizer*".into(), "training_args.json".into()],
        };
        assert!(f.keeps("config.json"));
        assert!(f.keeps("model.safetensors"));
        assert!(!f.keeps("model.bin"));
        assert!(!f.keeps("ckpt/optimizer.safetensors"));
        assert!(!f.keeps("training_args.json"));
        assert!(Filter::default().keeps("anything"));
        // A folder pattern, as huggingface_hub reads it.
        let folder = Filter {
            allow: vec!["onnx/".into()],
            ignore: vec!["*/quantized/".into()],
        };
        assert!(folder.keeps("onnx/model.onnx"));
        assert!(folder.keeps("onnx/fp16/model.onnx"));
        assert!(!folder.keeps("onnx"));
        assert!(!folder.keeps("onnx.json"));
        assert!(!folder.keeps("onnx/quantized/model.onnx"));
        assert_eq!(
            f.describe(),
            r#"STORAGE_ALLOW_PATTERNS ["*.json","*.safetensors"] and STORAGE_IGNORE_PATTERNS ["*/optimizer*","training_args.json"]"#
        );
    }
}
