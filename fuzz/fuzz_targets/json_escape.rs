//! Differential: exec.log's escaper
//! (`agent_relay::shell::exec_log::json::push_string_lossy`) against
//! `serde_json` of `String::from_utf8_lossy`, on any bytes. The two must
//! agree exactly, and what was already in the output buffer must stay in
//! front of the string untouched.

#![no_main]

use agent_relay::shell::exec_log::json::push_string_lossy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A prefix from the input itself, so appending is tested too.
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (prefix, bytes) = data.split_at(split);
    let mut out = prefix.to_vec();
    push_string_lossy(bytes, &mut out);
    let want = serde_json::to_string(&String::from_utf8_lossy(bytes))
        .expect("serde_json writes any string");
    assert_eq!(
        &out[..prefix.len()],
        prefix,
        "the bytes before were changed"
    );
    assert_eq!(
        &out[prefix.len()..],
        want.as_bytes(),
        "escaping differs from serde_json"
    );
});
