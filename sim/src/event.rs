//! Core events as owned data: what the driver records, a case replays and a
//! regression case file spells, one line an event (`guest 0a0b..`,
//! `client 3 0a0b..`, `tick`, ...). [`Kind`] is the one table of the
//! events' words and fields; the core's `Display` says them in traces.

use std::fmt::Write as _;

use agent_relay::core::{ClientId, Event, Millis};

/// Which core event, and what it carries besides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Event::GuestBytes`]: bytes.
    GuestBytes,
    /// [`Event::GuestWritten`]: a count.
    GuestWritten,
    /// [`Event::GuestClosed`].
    GuestClosed,
    /// [`Event::ClientConnected`]: a client.
    Connected,
    /// [`Event::ClientBytes`]: a client and bytes.
    ClientBytes,
    /// [`Event::ClientWritten`]: a client and a count.
    ClientWritten,
    /// [`Event::ClientDisconnected`]: a client.
    Disconnected,
    /// [`Event::Tick`].
    Tick,
    /// [`Event::WallClock`]: a count (ns since the Unix epoch).
    WallClock,
}

/// The fields an event carries, in the order a case line writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    None,
    Bytes,
    Count,
    Client,
    ClientBytes,
    ClientCount,
}

/// Each kind's word in case files and its fields.
const WORDS: [(Kind, &str, Fields); 9] = [
    (Kind::GuestBytes, "guest", Fields::Bytes),
    (Kind::GuestWritten, "guest_written", Fields::Count),
    (Kind::GuestClosed, "guest_closed", Fields::None),
    (Kind::Connected, "connect", Fields::Client),
    (Kind::ClientBytes, "client", Fields::ClientBytes),
    (Kind::ClientWritten, "client_written", Fields::ClientCount),
    (Kind::Disconnected, "disconnect", Fields::Client),
    (Kind::Tick, "tick", Fields::None),
    (Kind::WallClock, "wall", Fields::Count),
];

/// A core event with owned bytes, as recorded and replayed: its kind and
/// the fields that kind carries (the others are 0 and empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    /// Which event.
    pub kind: Kind,
    /// The client, for a client's event.
    pub client: u64,
    /// The count (bytes written, the wall clock).
    pub n: u64,
    /// The bytes read.
    pub bytes: Vec<u8>,
}

impl OwnedEvent {
    /// An event of `kind` with these fields.
    pub fn new(kind: Kind, client: u64, n: u64, bytes: Vec<u8>) -> OwnedEvent {
        OwnedEvent {
            kind,
            client,
            n,
            bytes,
        }
    }

    /// Copies a borrowed event.
    pub fn from_event(e: &Event<'_>) -> OwnedEvent {
        let (kind, client, n, bytes) = match *e {
            Event::GuestBytes(b) => (Kind::GuestBytes, 0, 0, b),
            Event::GuestWritten(n) => (Kind::GuestWritten, 0, n as u64, &[][..]),
            Event::GuestClosed => (Kind::GuestClosed, 0, 0, &[][..]),
            Event::ClientConnected(c) => (Kind::Connected, c.0, 0, &[][..]),
            Event::ClientBytes(c, b) => (Kind::ClientBytes, c.0, 0, b),
            Event::ClientWritten(c, n) => (Kind::ClientWritten, c.0, n as u64, &[][..]),
            Event::ClientDisconnected(c) => (Kind::Disconnected, c.0, 0, &[][..]),
            Event::Tick => (Kind::Tick, 0, 0, &[][..]),
            Event::WallClock(w) => (Kind::WallClock, 0, w, &[][..]),
        };
        OwnedEvent::new(kind, client, n, bytes.to_vec())
    }

    /// Borrows it as a core event.
    pub fn as_event(&self) -> Event<'_> {
        let c = ClientId(self.client);
        match self.kind {
            Kind::GuestBytes => Event::GuestBytes(&self.bytes),
            Kind::GuestWritten => Event::GuestWritten(self.n as usize),
            Kind::GuestClosed => Event::GuestClosed,
            Kind::Connected => Event::ClientConnected(c),
            Kind::ClientBytes => Event::ClientBytes(c, &self.bytes),
            Kind::ClientWritten => Event::ClientWritten(c, self.n as usize),
            Kind::Disconnected => Event::ClientDisconnected(c),
            Kind::Tick => Event::Tick,
            Kind::WallClock => Event::WallClock(self.n),
        }
    }

    /// Appends its case line after `now`: `3 client 7 00ff`.
    pub fn write_line(&self, now: Millis, out: &mut String) {
        let (_, word, fields) = WORDS[self.kind as usize];
        let _ = write!(out, "{now} {word}");
        let _ = match fields {
            Fields::None => Ok(()),
            Fields::Bytes => write!(out, " {}", hex(&self.bytes)),
            Fields::Count => write!(out, " {}", self.n),
            Fields::Client => write!(out, " {}", self.client),
            Fields::ClientBytes => write!(out, " {} {}", self.client, hex(&self.bytes)),
            Fields::ClientCount => write!(out, " {} {}", self.client, self.n),
        };
        out.push('\n');
    }

    /// Parses the words of a case line after its time.
    pub fn parse(words: &[&str]) -> Result<OwnedEvent, String> {
        let word = words.first().ok_or("missing event")?;
        let &(kind, _, fields) = WORDS
            .iter()
            .find(|(_, w, _)| w == word)
            .ok_or("unknown event")?;
        let num = |i: usize| parse_num(words.get(i).copied());
        let bytes = |i: usize| unhex(words.get(i).unwrap_or(&""));
        let (client, n, bytes) = match fields {
            Fields::None => (0, 0, Vec::new()),
            Fields::Bytes => (0, 0, bytes(1)?),
            Fields::Count => (0, num(1)?, Vec::new()),
            Fields::Client => (num(1)?, 0, Vec::new()),
            Fields::ClientBytes => (num(1)?, 0, bytes(2)?),
            Fields::ClientCount => (num(1)?, num(2)?, Vec::new()),
        };
        Ok(OwnedEvent::new(kind, client, n, bytes))
    }
}

/// One recorded core event and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Virtual time in ms.
    pub now: Millis,
    /// The event.
    pub event: OwnedEvent,
}

/// A decimal or `0x` hexadecimal number.
pub fn parse_num(word: Option<&str>) -> Result<u64, String> {
    let w = word.ok_or("missing field")?;
    let parsed = match w.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => w.parse(),
    };
    parsed.map_err(|e| e.to_string())
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd hex length {}", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_word_and_round_trips() {
        for (i, (kind, _, _)) in WORDS.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?} out of order in WORDS");
            let e = OwnedEvent::new(*kind, 7, 9, vec![0, 0xff]);
            let back = OwnedEvent::from_event(&e.as_event());
            let mut line = String::new();
            back.write_line(5, &mut line);
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words[0], "5");
            assert_eq!(OwnedEvent::parse(&words[1..]), Ok(back), "{line}");
        }
        assert!(OwnedEvent::parse(&["nonsense"]).is_err());
    }
}
