//! NATS subjects and patterns as the messaging plugin accepts them from manifests
//! and guests, and the subjects no guest may ever use.
//!
//! A subject is tokens separated by `.`: none empty, no whitespace. A pattern may
//! have `*` (one token) and `>` (the remaining tokens, last only) as whole tokens.
//! Reserved to the host, whatever a manifest says: subjects whose first token
//! starts with `$` (JetStream, system and account APIs), `_INBOX` (reply inboxes),
//! `weft`, `runtime` and `wasmbus` (the host's and the lattice's control subjects).

/// The longest subject or pattern accepted, in bytes: NATS's default
/// `max_control_line` (the whole `PUB` line) is 4 KiB.
pub const MAX_LEN: usize = 4096;

/// First tokens of the host's control subjects.
const CONTROL: &[&str] = &["weft", "runtime", "wasmbus"];

/// The inbox prefix of request/reply.
const INBOX: &str = "_INBOX";

/// Checks the syntax of a subject (`wildcards: false`) or pattern.
pub fn check_syntax(text: &str, wildcards: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("a subject cannot be empty".into());
    }
    if text.len() > MAX_LEN {
        return Err(format!("a subject is at most {MAX_LEN} bytes (this one has {})", text.len()));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a subject cannot contain spaces or control characters".into());
    }
    let tokens: Vec<&str> = text.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        match *token {
            "" => return Err("a subject cannot have an empty token (`..`, or a leading or trailing `.`)".into()),
            "*" | ">" if !wildcards => return Err("wildcards (`*`, `>`) are for subscriptions and grants only".into()),
            ">" if i + 1 < tokens.len() => return Err("`>` can only be the last token".into()),
            "*" | ">" => {}
            t if t.contains(['*', '>']) => return Err("`*` and `>` are wildcards only as whole tokens".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Why a subject is never a guest's, if it is reserved; `_INBOX` counts unless
/// `inbox_ok`.
fn reserved(subject: &str, inbox_ok: bool) -> Option<&'static str> {
    let first = subject.split('.').next().unwrap_or_default();
    if first.starts_with('$') {
        Some("subjects starting with `$` are reserved (JetStream, system and account APIs)")
    } else if first == INBOX && !inbox_ok {
        Some("`_INBOX` subjects are reply inboxes: replies need no grant")
    } else if CONTROL.contains(&first) {
        Some("subjects starting with `weft.`, `runtime.` or `wasmbus.` are the host's control subjects")
    } else {
        None
    }
}

/// Checks a pattern a manifest grants (or subscribes to): valid, starting with a
/// literal token (a leading wildcard would match the reserved subjects too), and
/// not reserved.
pub fn check_grant(pattern: &str) -> Result<(), String> {
    check_syntax(pattern, true)?;
    let first = pattern.split('.').next().unwrap_or_default();
    if first == "*" || first == ">" {
        return Err("a pattern must start with a literal token (a leading wildcard reaches the host's subjects)".into());
    }
    match reserved(pattern, false) {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Whether a guest may address `subject` (valid, without wildcards) given the
/// patterns granted to it; `Err` says why not.
pub fn check_use(subject: &str, granted: &[String]) -> Result<(), String> {
    check_syntax(subject, false)?;
    if let Some(why) = reserved(subject, false) {
        return Err(why.into());
    }
    if granted.iter().any(|p| matches(p, subject)) {
        Ok(())
    } else if granted.is_empty() {
        Err("the manifest grants no subjects for this".into())
    } else {
        Err(format!("it matches none of the granted patterns {granted:?}"))
    }
}

/// Whether `subject` may be answered: the reply-to of a message being handled.
/// Inboxes may; the host's subjects may not, whoever set the reply-to.
pub fn replyable(subject: &str) -> bool {
    check_syntax(subject, false).is_ok() && reserved(subject, true).is_none()
}

/// NATS subject matching: `*` matches one token, `>` the remaining ones.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.c"));
        assert!(matches("a.*", "a.c"));
        assert!(!matches("a.*", "a.c.d"));
        assert!(matches("a.>", "a.c.d"));
        assert!(!matches("a.>", "a"));
        assert!(!matches("a.b.c", "a.b"));
    }

    #[test]
    fn syntax() {
        for ok in ["a", "a.b", "orders.created", "a-b_c.D9"] {
            assert_eq!(check_syntax(ok, false), Ok(()), "{ok}");
        }
        for ok in ["a.*", "a.>", "a.*.c", "a.*.>"] {
            assert_eq!(check_syntax(ok, true), Ok(()), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a\tb", "a\nb", "a.>.b", "a.b*", "a.>x", "a.*b"] {
            assert!(check_syntax(bad, true).is_err(), "{bad:?}");
        }
        assert!(check_syntax("a.*", false).is_err());
        assert!(check_syntax("a.>", false).is_err());
        assert!(check_syntax(&"a".repeat(MAX_LEN + 1), false).is_err());
    }

    #[test]
    fn grants() {
        for ok in ["orders.>", "orders.*.created", "a", "inbox.x", "weftish.x", "my.weft.x", "x.$y"] {
            assert_eq!(check_grant(ok), Ok(()), "{ok}");
        }
        for bad in [">", "*", "*.x", "*.>", "$JS.>", "$JS.API.STREAM.LIST", "$SYS.>", "$KV.x.>", "_INBOX.>"] {
            assert!(check_grant(bad).is_err(), "{bad}");
        }
        for bad in [
            "_INBOX.*",
            "_INBOX.abc",
            "weft.>",
            "runtime.host.*",
            "runtime.operator.x",
            "wasmbus.>",
            "weft.lattice.blue.>",
            "weft.lattice.blue.runtime.host.*",
            // Remote links' wRPC subjects.
            "weft.links.default.wrpc.0.0.1.acme:store/carts@1.0.0.add",
            "weft.links.>",
        ] {
            assert!(check_grant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn use_and_replies() {
        let granted = vec!["orders.>".to_string()];
        assert_eq!(check_use("orders.new", &granted), Ok(()));
        assert!(check_use("orders", &granted).is_err());
        assert!(check_use("orders.*", &granted).is_err());
        assert!(check_use("$JS.API.STREAM.LIST", &[]).is_err());
        assert!(check_use("anything", &[]).is_err());
        assert!(replyable("_INBOX.abc.1"));
        assert!(replyable("answers.x"));
        assert!(!replyable("_INBOX.*"));
        assert!(!replyable("$JS.API.STREAM.PURGE.KV_x"));
        assert!(!replyable("runtime.host.x"));
    }
}
