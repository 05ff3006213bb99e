//! exec.log's own JSON escaping and UTF-8 handling against the references:
//! `serde_json` for the escaping, `String::from_utf8_lossy` of the whole
//! stream for what the tap's records say, however the stream is cut into
//! frames.

use agent_relay::core::{Action, Config, Event, Relay};
use agent_relay::shell::exec_log::json::push_string_lossy;
use agent_relay::testkit::frames::{exec_request, exited, ready, stdout};
use agent_relay::wire::LEGACY_VERSION as V1;
use quickcheck::{QuickCheck, TestResult};

fn escaped(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    push_string_lossy(bytes, &mut out);
    String::from_utf8(out).expect("the escaper writes UTF-8")
}

#[test]
fn prop_json_escape_is_serde_json_of_the_lossy_text() {
    fn prop(bytes: Vec<u8>, specials: Vec<u8>) -> bool {
        // Mix in the bytes that matter most.
        let mut b = bytes;
        for (i, s) in specials.iter().enumerate() {
            let pick = [b'"', b'\\', b'\n', 0x00, 0x1f, 0x7f, 0xe2, 0x82, 0xac, 0xff];
            let at = (i * 7) % (b.len() + 1);
            b.insert(at, pick[usize::from(*s) % pick.len()]);
        }
        let want = serde_json::to_string(&String::from_utf8_lossy(&b)).expect("a string");
        escaped(&b) == want
    }
    QuickCheck::new()
        .tests(2_000)
        .quickcheck(prop as fn(Vec<u8>, Vec<u8>) -> bool);
}

/// The records a session's output becomes say what the lossy decode of the
/// whole output says, whatever the frames' cuts: short ones (copied into the
/// record) and, with `long`, runs of a kibibyte and more (kept as slices of
/// their frames) among them.
#[test]
fn prop_tap_records_equal_lossy_decode_of_the_stream() {
    fn prop(stream: Vec<u8>, cuts: Vec<u8>, long: bool) -> TestResult {
        if stream.is_empty() {
            return TestResult::discard();
        }
        let stream = if long {
            stream.repeat(6_000 / stream.len() + 1)
        } else {
            stream
        };
        let mut relay = Relay::new(Config {
            exec_log: true,
            ..Config::legacy()
        });
        relay.handle(0, Event::GuestBytes(&ready(V1, 0)));
        relay.handle(0, Event::ClientConnected(agent_relay::core::ClientId(1)));
        let req = exec_request(V1, 1, false, 0);
        relay.handle(0, Event::ClientBytes(agent_relay::core::ClientId(1), &req));
        let mut rest = &stream[..];
        for c in cuts.iter().chain(std::iter::repeat(&255)) {
            if rest.is_empty() {
                break;
            }
            let n = match *c {
                c @ 200.. if long => 1_000 + usize::from(c - 200) * 9,
                c => usize::from(c) % 7 + 1,
            };
            let n = n.min(rest.len());
            relay.handle(0, Event::GuestBytes(&stdout(V1, 1, &rest[..n])));
            rest = &rest[n..];
        }
        relay.handle(0, Event::GuestBytes(&exited(V1, 1, 0)));
        let mut text = String::new();
        while let Some(a) = relay.poll_action() {
            if let Action::Log(r) = a
                && r.source == agent_relay::core::LogSource::Stdout
            {
                text.push_str(&r.text.to_string());
            }
        }
        TestResult::from_bool(text == String::from_utf8_lossy(&stream))
    }
    QuickCheck::new()
        .tests(1_000)
        .quickcheck(prop as fn(Vec<u8>, Vec<u8>, bool) -> TestResult);
}

/// The writer escapes a record's runs one after the other without joining
/// them; that gives the same string as escaping the joined bytes, however
/// the text was cut into pieces (long runs kept as slices, short ones
/// copied, cuts inside characters among them).
#[test]
fn prop_record_runs_escape_as_the_joined_text() {
    fn prop(bytes: Vec<u8>, cuts: Vec<u8>) -> bool {
        use agent_relay::core::LogText;
        // Repeated so that some runs reach the kibibyte a slice needs.
        let whole = bytes::Bytes::from(bytes.repeat(30));
        let mut text = LogText::new();
        let mut at = 0;
        for c in cuts.iter().chain(std::iter::repeat(&7)) {
            if at == whole.len() {
                break;
            }
            let n = match *c {
                c @ 128.. => 1_024 + usize::from(c - 128) * 13,
                c => usize::from(c) % 5 + 1,
            };
            let end = (at + n).min(whole.len());
            text.push(&whole[at..end], Some(&whole));
            at = end;
        }
        let mut by_runs = Vec::new();
        agent_relay::shell::exec_log::json::push_runs_lossy(text.runs().iter(), &mut by_runs);
        let mut joined = Vec::new();
        push_string_lossy(&text.joined(), &mut joined);
        by_runs == joined && text.joined()[..] == whole[..]
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Vec<u8>, Vec<u8>) -> bool);
}
