//! `${VAR}` and `${VAR:-default}` substitution in string values; `$$` is a literal `$`.
//! It runs on parsed string values, not on raw text, so line and column numbers in
//! errors still point into the file as written and a variable can never inject TOML.

/// Replaces variables in `input` using `lookup`. The error names the variable.
pub fn interpolate(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$$` for a literal `$`)".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!("invalid variable name `{name}` in `${{{expr}}}`"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("loki".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let cases = [
            ("http://${HOST}:3100", "http://loki:3100"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-used}", "used"),
            ("${MISSING:-}", ""),
            ("cost $$5 and $x", "cost $5 and $x"),
            ("plain", "plain"),
        ];
        for (input, expected) in cases {
            assert_eq!(interpolate(input, env).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn reports_missing_and_malformed_variables() {
        assert!(interpolate("${MISSING}", env).unwrap_err().contains("`MISSING` is not set"));
        assert!(interpolate("${HOST", env).unwrap_err().contains("unterminated"));
        assert!(interpolate("${A B}", env).unwrap_err().contains("invalid variable name"));
    }
}
