//! The allowlist's one wildcard: `*` matches any run of characters
//! (`deepseek/*`, `gpt-4o*`, `*`). No other character is special, so a
//! model name can never be misread as a pattern of another kind.

/// Whether `name` matches `pattern`. Backtracks only to the last `*`, so
/// the work is at most the product of the two lengths (both at most 256
/// characters): no pattern can make a request slow.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and where in `name` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn stars_match_any_run_and_nothing_else_is_special() {
        let cases = [
            ("*", "anything/at-all", true),
            ("*", "", true),
            ("fast", "fast", true),
            ("fast", "faster", false),
            ("fast", "fas", false),
            ("deepseek/*", "deepseek/chat", true),
            ("deepseek/*", "deepseek/", true),
            ("deepseek/*", "deepseek", false),
            ("deepseek/*", "openai/deepseek/x", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("*mini", "gpt-4o-mini", true),
            ("*-4o-*", "gpt-4o-mini", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("?", "x", false),
            ("[a]", "a", false),
            ("a.b", "axb", false),
            ("**", "x", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn a_hostile_pattern_is_answered() {
        let pattern = "*a".repeat(128);
        let name = "a".repeat(255) + "b";
        assert!(!glob_match(&pattern, &name));
    }
}
