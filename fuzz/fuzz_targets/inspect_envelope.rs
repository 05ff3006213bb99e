//! Differential: `wire::inspect_envelope`, the relay's generic check of a
//! current-generation client envelope, against a reference built on
//! `ciborium::Value` from the rule it implements: the body is exactly one
//! CBOR item (nothing after it), a map behind any tags, whose keys are all
//! text, with exactly one `t`, a text not under `control.`; `v` is read when
//! it is an unsigned integer, `p` when it is a byte string behind any tags.
//!
//! Where ciborium parses the body, the two agree: same verdict, same name,
//! `v` and payload. One reading of the reference is not ciborium's `Value`:
//! that turns a byte string under tag 2 or 3 into a bignum integer, while
//! serde's reading of bytes (agentd's, through ciborium too) skips every
//! tag; so when `Value` shows a lone `p` as an integer, the reference asks serde
//! for it as bytes (only then: serde would also take an array of small
//! integers for bytes, which the rule does not). ciborium refuses a little more than the rule does (text
//! that is not UTF-8 outside the keys and `t`, unassigned simple values), so
//! where it refuses the body, `inspect_envelope` may accept; bodies nested
//! past 60 levels are left to the target's unit tests (the rule stops at 64,
//! ciborium at 256).

#![no_main]

use agent_relay::wire::inspect_envelope;
use ciborium::Value;
use libfuzzer_sys::fuzz_target;

/// `p` as serde reads it into bytes, every tag skipped.
#[derive(serde::Deserialize)]
struct OnlyP {
    #[serde(default, with = "serde_bytes")]
    p: Option<Vec<u8>>,
}

/// What the reference found: the name, `v`, and `p`.
type Found = (String, Option<u64>, Option<Vec<u8>>);

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tag(_, inner) => 1 + depth(inner),
        _ => 1,
    }
}

fn untag(mut v: &Value) -> &Value {
    while let Value::Tag(_, inner) = v {
        v = inner;
    }
    v
}

/// The rule, on a parsed top item (`body` is its encoding).
fn judge(top: &Value, body: &[u8]) -> Option<Found> {
    let Value::Map(entries) = untag(top) else {
        return None;
    };
    let mut t = None;
    let (mut v, mut p) = (None, None);
    for (k, val) in entries {
        let Value::Text(k) = k else {
            return None;
        };
        match (k.as_str(), val) {
            ("t", Value::Text(name)) if t.is_none() => t = Some(name.clone()),
            ("t", _) => return None,
            ("v", Value::Integer(i)) => v = u64::try_from(*i).ok(),
            ("v", _) => v = None,
            ("p", val) => {
                p = match untag(val) {
                    Value::Bytes(b) => Some(b.clone()),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    let ps = entries
        .iter()
        .filter(|(k, _)| matches!(k, Value::Text(k) if k == "p"))
        .count();
    let bignum_p = entries.iter().any(|(k, val)| {
        matches!(k, Value::Text(k) if k == "p") && matches!(untag(val), Value::Integer(_))
    });
    if p.is_none() && ps == 1 && bignum_p {
        p = ciborium::de::from_reader::<OnlyP, _>(body)
            .ok()
            .and_then(|o| o.p);
    }
    let t = t?;
    (!t.starts_with("control.")).then_some((t, v, p))
}

fuzz_target!(|body: &[u8]| {
    let got = inspect_envelope(body)
        .map(|e| (e.name.into_owned(), e.v, e.payload.map(|p| p.into_owned())));
    let mut rest = body;
    let Ok(top) = ciborium::de::from_reader::<Value, _>(&mut rest) else {
        return;
    };
    if depth(&top) > 60 {
        return;
    }
    let want = if rest.is_empty() {
        judge(&top, body)
    } else {
        None
    };
    match (&want, &got) {
        (Some(w), Ok(g)) => assert_eq!(w, g, "inspect_envelope read another envelope"),
        (None, Err(_)) => {}
        (Some(w), Err(e)) => panic!("the rule accepts {w:?}; inspect_envelope refused: {e}"),
        (None, Ok(g)) => panic!("the rule refuses; inspect_envelope accepted {g:?}"),
    }
});
