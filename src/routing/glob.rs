//! Shell-style globs for model, route and tenant names: `*` matches any run of characters,
//! `?` any one character, everything else itself. Linear time, no backtracking blow-up.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob { pattern: pattern.chars().collect() }
    }

    pub fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Position of the last `*` and the text position it was tried at.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks_match_like_a_shell() {
        let cases = [
            ("gpt-4o*", "gpt-4o", true),
            ("gpt-4o*", "gpt-4o-mini-2024-07-18", true),
            ("gpt-4o*", "gpt-4", false),
            ("claude-*-4-5", "claude-sonnet-4-5", true),
            ("claude-*-4-5", "claude-sonnet-4-1", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("o?-mini", "o3-mini", true),
            ("o?-mini", "o13-mini", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Glob::new(pattern).is_match(text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let pattern = Glob::new(&"*a".repeat(50));
        assert!(!pattern.is_match(&"a".repeat(49)));
    }
}
